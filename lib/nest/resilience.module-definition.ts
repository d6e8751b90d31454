import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { ResilienceModuleExtras, ResilienceModuleOptions } from './resilience.options.js';

const built = new ConfigurableModuleBuilder<ResilienceModuleOptions>({ moduleName: 'Resilience' })
  .setClassMethodName('forRoot')
  .setExtras<ResilienceModuleExtras>({ isGlobal: false, globalRateLimit: undefined }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
  }))
  .build();

/** The base class of `ResilienceModule`: `forRoot` / `forRootAsync` as Nest's module builder makes them. */
export const ResilienceConfigurableModule = built.ConfigurableModuleClass;
/** Injection token of the resolved `ResilienceModuleOptions` (what `forRoot` received or `forRootAsync` built). */
export const RESILIENCE_MODULE_OPTIONS = built.MODULE_OPTIONS_TOKEN;
/** The type `forRoot` accepts: the module options and the extras. */
export const RESILIENCE_OPTIONS_TYPE = built.OPTIONS_TYPE;
/** The type `forRootAsync` accepts. */
export const RESILIENCE_ASYNC_OPTIONS_TYPE = built.ASYNC_OPTIONS_TYPE;
