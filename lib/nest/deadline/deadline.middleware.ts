import { GatewayTimeoutException, Inject, Injectable, Optional, type NestMiddleware } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { CallContext, leaveContext, runInContext } from '../../core/context.js';
import { MAX_TIMER_MS } from '../../core/duration.js';
import { InvalidOptionError, OperationAbortedError } from '../../core/errors.js';
import { TimeoutExceededError } from '../../policies/timeout/timeout.error.js';
import { RESILIENCE_MODULE_OPTIONS } from '../resilience.module-definition.js';
import type { ResilienceModuleOptions } from '../resilience.options.js';
import { ResilienceService } from '../resilience.service.js';
import { parseDeadline } from './deadline-headers.js';
import { resolveDeadlinePropagationOptions, type DeadlinePropagationOptions, type ResolvedDeadlinePropagationOptions } from './deadline.options.js';

/**
 * Reads the caller's deadline from a request header (the module's `deadline` option) and runs
 * the rest of the request — guards, interceptors, handler and their async work — inside a call
 * context bounded by it: every `@Timeout` of the request gives up no later than the caller,
 * `getRemainingTime()` and `getAbortSignal()` see it, and `deadlineHeaders()` / `withDeadline()`
 * pass what is left downstream. A request whose deadline has passed is answered 504 at once
 * (`onExpired: 'reject'`); a request without the header, or with a malformed one, runs as if
 * there were no option. Applied to every route by `ResilienceModule` when `deadline` is set.
 *
 * Works on Express and on Fastify (where Nest middleware receives Node's raw request and response).
 */
@Injectable()
export class DeadlineMiddleware implements NestMiddleware<IncomingMessage, ServerResponse> {
  private readonly settings: ResolvedDeadlinePropagationOptions | undefined;
  private readonly clock: Clock;

  /**
   * Reads `options.deadline` and `options.clock`.
   *
   * @param resilience when present, a request's context follows the application's lifetime: at
   *   shutdown the calls of requests in flight are aborted as those of other requests are.
   * @throws InvalidOptionError (at bootstrap) when a `deadline` option cannot work.
   */
  constructor(
    @Inject(RESILIENCE_MODULE_OPTIONS) options: ResilienceModuleOptions,
    @Optional() private readonly resilience?: ResilienceService,
  ) {
    this.settings = options.deadline === undefined ? undefined : resolveOrExplain(options.deadline);
    this.clock = options.clock ?? systemClock;
  }

  /** Enters the request's deadline, if it brings one, for the rest of the request. */
  use(request: IncomingMessage, response: ServerResponse, next: (error?: unknown) => void): void {
    const settings = this.settings;
    if (settings === undefined) return next();
    // Node joins repeated headers of unknown names with ", ": such a value is malformed, like an array.
    const value = request.headers[settings.header];
    if (typeof value !== 'string') return next();
    let remaining = parseDeadline(value, settings.format);
    if (remaining === undefined) return next();
    if (remaining <= 0) {
      if (settings.onExpired === 'ignore') return next();
      // Nest's middleware proxy answers it through the exception filters, as any handler's 504.
      throw new GatewayTimeoutException('The request deadline had passed when the request arrived', { cause: new TimeoutExceededError(0), description: 'Gateway Timeout' });
    }
    if (remaining > settings.maxDeadlineMs) remaining = settings.maxDeadlineMs;
    // The client hung up (or the answer was sent) during an earlier async middleware: 'close' has
    // fired already and would never end the context, leaving it in flight for good.
    if (response.destroyed || response.writableFinished || response.closed) return next();
    new RequestDeadline(this.resilience?.callContext(), this.clock, remaining, response).enter(next);
  }
}

function resolveOrExplain(options: DeadlinePropagationOptions): ResolvedDeadlinePropagationOptions {
  try {
    return resolveDeadlinePropagationOptions(options);
  } catch (error) {
    if (!(error instanceof InvalidOptionError)) throw error;
    throw new InvalidOptionError(error.option === '' ? 'deadline' : `deadline.${error.option}`, error.value, error.expected, 'ResilienceModule.forRoot');
  }
}

/**
 * One request's deadline: the context its handlers run in, the timer that aborts it when the
 * deadline passes (so the request's `AbortSignal` fires even where no `@Timeout` applies) and
 * the moment it stops counting as in flight: when the response is closed, sent or not.
 */
class RequestDeadline extends CallContext {
  private timer: TimerHandle | undefined;
  private next: ((error?: unknown) => void) | undefined;
  private ended = false;

  constructor(
    parent: CallContext | undefined,
    private readonly clock: Clock,
    private readonly allowedMs: number,
    private readonly response: ServerResponse,
  ) {
    super(parent, clock.now() + allowedMs);
  }

  enter(next: (error?: unknown) => void): void {
    // A deadline beyond what a timer holds (days) needs none: no request lasts that long.
    if (this.allowedMs <= MAX_TIMER_MS) this.timer = this.clock.setTimeout(this.expire, this.allowedMs);
    // 'close' comes for every response: after 'finish', or when the connection drops first.
    this.response.once('close', this.end);
    this.next = next;
    try {
      runInContext(this, proceed);
    } catch (error) {
      // runInContext has left already: only the timer and the listener remain.
      this.ended = true;
      this.clock.clearTimeout(this.timer);
      this.response.removeListener('close', this.end);
      this.dispose();
      throw error;
    }
  }

  /** Runs the next middleware; called inside the context, with the context as argument. */
  proceed(): void {
    const next = this.next!;
    this.next = undefined;
    next();
  }

  private readonly expire = (): void => {
    this.timer = undefined;
    this.abort(new TimeoutExceededError(this.allowedMs));
  };

  private readonly end = (): void => {
    if (this.ended) return;
    this.ended = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    // The client went away before its answer: the work done for it can stop.
    if (!this.response.writableFinished) this.abort(new OperationAbortedError(new Error('The client closed the connection before the response was sent')));
    this.dispose();
    leaveContext();
  };
}

// Module-level, so that entering a request's context allocates no closure: `runInContext` hands
// the task its context, and `next` must be called without an argument (Express reads one as an error).
function proceed(context: CallContext): void {
  (context as RequestDeadline).proceed();
}
