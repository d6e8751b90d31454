export {
  DEFAULT_LOG_LEVELS,
  RESILIENCE_LOGGING_OPTIONS,
  ResilienceLogger,
  ResilienceLoggingModule,
  type ResilienceLogKind,
  type ResilienceLogLevel,
  type ResilienceLoggingOptions,
} from './resilience-logging.js';
