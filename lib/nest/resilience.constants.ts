/** Nest's own metadata keys for `@UseGuards` / `@UseInterceptors` (stable since Nest 6; a test checks them). */
export const GUARDS_METADATA = '__guards__';
export const INTERCEPTORS_METADATA = '__interceptors__';

/** Our metadata keys, written by the decorators and read only by the metadata accessor. */
export const RATE_LIMIT_METADATA = 'nest-resilience:rate-limit';
export const SKIP_RATE_LIMIT_METADATA = 'nest-resilience:skip-rate-limit';

/** Token of the module's `globalRateLimit` setting. */
export const GLOBAL_RATE_LIMIT = Symbol('nest-resilience:global-rate-limit');
