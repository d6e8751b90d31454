const REJECTION_BRAND = Symbol.for('nest-resilience.rejection');

/**
 * Marks the errors by which a policy refuses a call without running it (rate limit, open
 * circuit, full bulkhead). A breaker never counts them as failures, and a retry does not
 * retry them unless told to.
 */
export const rejectionBrand: typeof REJECTION_BRAND = REJECTION_BRAND;

/** Whether `error` is a refusal by one of our policies (the call never ran). */
export function isPolicyRejection(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[REJECTION_BRAND] === true;
}
