import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { ResilienceModuleExtras, ResilienceModuleOptions } from './resilience.options.js';

export const {
  ConfigurableModuleClass: ResilienceConfigurableModule,
  MODULE_OPTIONS_TOKEN: RESILIENCE_MODULE_OPTIONS,
  OPTIONS_TYPE: RESILIENCE_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: RESILIENCE_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<ResilienceModuleOptions>({ moduleName: 'Resilience' })
  .setClassMethodName('forRoot')
  .setExtras<ResilienceModuleExtras>({ isGlobal: false, globalRateLimit: undefined }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
  }))
  .build();
