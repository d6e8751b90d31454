import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { LiveConfigOptions } from '../../stores/redis/live-config.js';

const built = new ConfigurableModuleBuilder<LiveConfigOptions>({ moduleName: 'ResilienceLiveConfig' }).setClassMethodName('forRoot').build();

/** The base class of `ResilienceLiveConfigModule`: `forRoot` / `forRootAsync` as Nest's module builder makes them. */
export const ResilienceLiveConfigConfigurableModule = built.ConfigurableModuleClass;
/** Injection token of the resolved `LiveConfigOptions`. */
export const LIVE_CONFIG_OPTIONS = built.MODULE_OPTIONS_TOKEN;
/** The type `forRootAsync` accepts. */
export const LIVE_CONFIG_ASYNC_OPTIONS_TYPE = built.ASYNC_OPTIONS_TYPE;
