import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { Observable } from 'rxjs';
import { mapError } from '../errors/error-mapping.js';
import { ResilienceService } from '../resilience.service.js';

/**
 * Runs a handler through its pipeline (fallback, retry, breaker, timeout, bulkhead). Attached by
 * the decorators to the handlers that need it, exactly once per handler. A retry calls
 * `next.handle()` again, which runs the handler again.
 */
@Injectable()
export class ResilienceInterceptor implements NestInterceptor {
  /** Built by Nest's injector, which needs the module (`isGlobal`, or imported) where the handler's class is declared. */
  constructor(private readonly resilience: ResilienceService) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const resilience = this.resilience;
    const plan = resilience.planFor(context.getClass(), context.getHandler());
    // The request, as `switchToHttp().getRequest()` returns it, without the object that call builds.
    const method = context.getType() === 'http' ? context.getArgByIndex<{ method?: string } | undefined>(0)?.method : undefined;
    const pipeline = resilience.pipelineFor(plan, method);
    if (pipeline === undefined) return next.handle();
    const args = [context];
    const callContext = resilience.callContext();
    return new Observable((subscriber) => {
      // Aborted already (the application is shutting down): the handler does not run.
      const running = callContext.aborted ? Promise.reject(callContext.abortReason) : pipeline.execute(() => lastValueOf(next.handle()), callContext, { args });
      running.then(
        (value) => {
          subscriber.next(value);
          subscriber.complete();
        },
        (error: unknown) => {
          const mapping = resilience.options.errorMapping;
          subscriber.error(mapping ? mapping(error, context) : mapError(error, context, resilience.transports));
        },
      );
    });
  }
}

/** The last value an observable emits before it completes (`undefined` when it emits none). */
function lastValueOf<T>(source: Observable<T>): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    let last: T | undefined;
    source.subscribe({
      next: (value) => {
        last = value;
      },
      error: reject,
      complete: () => resolve(last),
    });
  });
}
