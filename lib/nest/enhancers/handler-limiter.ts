import { createHash } from 'node:crypto';
import type { ExecutionContext } from '@nestjs/common';
import type { Clock } from '../../core/clock.js';
import { InvalidOptionError } from '../../core/errors.js';
import type { KeyedPolicy } from '../../core/pipeline.js';
import { executeWith } from '../../core/policy.js';
import { RateLimitExceededError } from '../../policies/rate-limit/rate-limit.error.js';
import type { LimitState, RateLimitDecision, RateLimitOptions } from '../../policies/rate-limit/rate-limit.options.js';
import { RateLimitPolicy } from '../../policies/rate-limit/rate-limit.policy.js';
import type { ResilienceStore } from '../../stores/store.interface.js';
import { normalizeIp } from '../context/client-ip.js';
import { clientIpOf, setHeader, userIdOf } from '../context/execution-context.util.js';
import { safeKeyPart } from '../context/key-part.js';
import { mapError, retryAfterSeconds, type TransportExceptions } from '../errors/error-mapping.js';
import type { ErrorMapping, RateLimitHeaders, RateLimitKey, RateLimitSettings } from '../resilience.options.js';

/** Whether a named limit's budget is per handler or shared by every handler naming it. */
export type LimitScope = 'handler' | 'policy';

/** A limit as found on a handler, before validation. */
export interface LimitSource {
  settings: RateLimitSettings;
  /** The named policy it came from. */
  policy?: string;
  /** Overrides the settings' scope (the module's globalRateLimit shares one budget). */
  scope?: LimitScope;
}

/** What limiters need from the module. */
export interface LimiterEnvironment {
  headers: RateLimitHeaders;
  ipv6Subnet: number;
  clientIp?: (request: unknown) => string | undefined;
  errorMapping?: ErrorMapping;
  transports?: TransportExceptions;
}

const SETTINGS_KEYS = ['name', 'algorithm', 'limit', 'window', 'burst', 'cost', 'mode', 'maxWait', 'onStoreError', 'key', 'scope', 'skipSuccessful'];
const KEY_KINDS = ['ip', 'user', 'route', 'global'];
const MAX_TIERS = 64;
const STORE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** One engine's limits and the HTTP header text that describes them (built once). */
interface Tier {
  readonly engine: RateLimitPolicy;
  readonly labels: readonly string[];
  readonly policyHeader: string;
  /** `"label";r=` per limit: how each limit's item of the `RateLimit` header starts. */
  readonly remainingPrefixes: readonly string[];
}

/** Limits of one handler that count the same client key: decided in one atomic store call. */
export class LimitGroup {
  private readonly tiers = new Map<string, Tier>();
  private readonly fixed: Tier | undefined;

  /**
   * Built by the module from a handler's validated limits (see `resolveLimits`).
   * @throws InvalidOptionError when a limit's options cannot work.
   */
  constructor(
    /** Who the group's limits count. */
    readonly key: RateLimitKey,
    private readonly limits: ReadonlyArray<{ options: RateLimitOptions; label: string; limit: number | ((context: ExecutionContext) => number) }>,
    /** Units a request costs, or a function of the request. */
    readonly cost: number | ((context: ExecutionContext) => number),
    /** Decides and counts but never refuses. */
    readonly shadow: boolean,
    /** Refunds requests that succeed (status < 400). */
    readonly skipSuccessful: boolean,
    private readonly build: (options: RateLimitOptions[]) => RateLimitPolicy,
    /** Where each limit was written (`''`, or `[1]` among several), for error messages. */
    private readonly paths: readonly string[] = [],
  ) {
    const dynamic = limits.some((limit) => typeof limit.limit === 'function');
    // Validate every option now, with a placeholder for limits computed per request.
    const probe = this.makeTier(limits.map((limit) => (typeof limit.limit === 'function' ? 1 : limit.limit)));
    this.fixed = dynamic ? undefined : probe;
  }

  /** The engine for this request (one per distinct set of tier limits). */
  tierFor(context: ExecutionContext | undefined): Tier {
    if (this.fixed !== undefined) return this.fixed;
    const values = this.limits.map((limit) => (typeof limit.limit === 'function' ? (context === undefined ? NaN : limit.limit(context)) : limit.limit));
    const id = values.join(',');
    let tier = this.tiers.get(id);
    if (tier === undefined) {
      if (this.tiers.size >= MAX_TIERS) throw new Error(`A rate limit's limit function returned more than ${MAX_TIERS} distinct values; tiers must be few`);
      tier = this.makeTier(values);
      this.tiers.set(id, tier);
    }
    return tier;
  }

  /** Every engine built so far (for reset and stats). */
  allTiers(): Tier[] {
    return this.fixed !== undefined ? [this.fixed] : [...this.tiers.values()];
  }

  /** Units this request costs: the fixed cost, or the cost function's answer (1 without a request). */
  costOf(context: ExecutionContext | undefined): number {
    return typeof this.cost === 'number' ? this.cost : context === undefined ? 1 : this.cost(context);
  }

  private makeTier(values: number[]): Tier {
    // Each tier has budgets of its own: a client moving to another tier starts afresh.
    const options = this.limits.map((limit, index) => ({ ...limit.options, limit: values[index]!, name: typeof limit.limit === 'function' ? storeName(`${limit.options.name}.t${values[index]}`) : limit.options.name! }));
    let engine: RateLimitPolicy;
    try {
      engine = this.build(options);
    } catch (error) {
      // The engine names options `rateLimit[0].limit`; name them as the user wrote them.
      if (!(error instanceof InvalidOptionError)) throw error;
      const match = /^rateLimit(?:\[(\d+)\])?(?:\.(.*))?$/.exec(error.option);
      if (match === null) throw error;
      const path = this.paths[Number(match[1] ?? 0)] ?? '';
      const option = match[2] === undefined ? path || 'rateLimit' : path ? `${path}.${match[2]}` : match[2];
      throw new InvalidOptionError(option, error.value, error.expected, error.where);
    }
    const policyHeader = engine.options.limits
      .map((spec, index) => `"${this.limits[index]!.label}";q=${spec.limit};w=${Math.max(1, Math.ceil(spec.windowMs / 1000))}`)
      .join(', ');
    return { engine, labels: this.limits.map((limit) => limit.label), policyHeader, remainingPrefixes: this.limits.map((limit) => `"${limit.label}";r=`) };
  }
}

/** Makes a store-safe limit name; long or unusual names become a hash. */
function storeName(raw: string): string {
  const cleaned = raw.replace(/[^A-Za-z0-9_.-]/g, '_');
  if (STORE_NAME.test(cleaned)) return cleaned;
  return `x.${createHash('sha256').update(raw).digest('base64url').slice(0, 40)}`;
}

/**
 * Validates a handler's limits and groups them by the client key they count, each group one
 * engine (one atomic store call).
 * @throws InvalidOptionError naming the option (`rateLimit[1].limit`), the value and what is allowed.
 */
export function resolveLimits(sources: readonly LimitSource[], environment: { handlerId: string; clock: Clock; store: ResilienceStore; provider?: boolean; onEngine?: (engine: RateLimitPolicy) => void }): LimitGroup[] {
  const groups = new Map<RateLimitKey, Array<{ source: LimitSource; path: string; index: number }>>();
  sources.forEach((source, index) => {
    const path = sources.length > 1 ? `[${index}]` : '';
    const settings = source.settings;
    if (typeof settings !== 'object' || settings === null) throw new InvalidOptionError(path || 'rateLimit', settings, 'rate-limit settings such as { limit: 100, window: "1m" }');
    for (const key of Object.keys(settings)) {
      if (!SETTINGS_KEYS.includes(key)) throw new InvalidOptionError(`${path ? `${path}.` : ''}${key}`.replace(/^\./, ''), (settings as Record<string, unknown>)[key], `no such option; known options: ${SETTINGS_KEYS.join(', ')}`);
    }
    const at = (option: string): string => (path ? `${path}.${option}` : option);
    const key = settings.key ?? (environment.provider ? 'global' : 'ip');
    if (typeof key !== 'function' && !KEY_KINDS.includes(key)) throw new InvalidOptionError(at('key'), key, "'ip', 'user', 'route', 'global' or a function of the execution context");
    if (environment.provider && key !== 'global' && key !== 'route') throw new InvalidOptionError(at('key'), key, "'global' or 'route' on a provider method (there is no request to identify a client by)");
    if (settings.scope !== undefined && settings.scope !== 'handler' && settings.scope !== 'policy') throw new InvalidOptionError(at('scope'), settings.scope, "'handler' or 'policy'");
    if (settings.skipSuccessful !== undefined && typeof settings.skipSuccessful !== 'boolean') throw new InvalidOptionError(at('skipSuccessful'), settings.skipSuccessful, 'true or false');
    if (settings.limit === undefined) throw new InvalidOptionError(at('limit'), undefined, 'an integer ≥ 1 or a function of the execution context');
    if (!environment.provider && settings.maxWait !== undefined) {
      throw new InvalidOptionError(at('maxWait'), settings.maxWait, 'no maxWait on a request handler: a request is decided at once (maxWait applies to provider methods)');
    }
    if (environment.provider && (typeof settings.limit === 'function' || typeof settings.cost === 'function')) {
      throw new InvalidOptionError(at(typeof settings.limit === 'function' ? 'limit' : 'cost'), settings.limit, 'a number on a provider method');
    }
    const list = groups.get(key as RateLimitKey) ?? [];
    list.push({ source, path, index });
    groups.set(key as RateLimitKey, list);
  });

  const result: LimitGroup[] = [];
  const unnamedSeen = new Map<string, number>();
  for (const [key, members] of groups) {
    const first = members[0]!;
    const firstSettings = first.source.settings;
    const limits = members.map(({ source, path }) => {
      const { key: _key, scope: _scope, skipSuccessful: _skip, limit, cost: _cost, mode: _mode, ...engineOptions } = source.settings;
      // Unnamed limits are named as the engine names them ('default', then 'default-1', ...), or
      // after their policy ('login', then 'login-1', ...).
      const base = source.policy ?? 'default';
      const seen = unnamedSeen.get(base) ?? 0;
      if (source.settings.name === undefined) unnamedSeen.set(base, seen + 1);
      const label = source.settings.name ?? (seen === 0 ? base : `${base}-${seen}`);
      // `key: 'global'` in a named policy means one budget for the whole policy, whoever names it.
      const scope = source.scope ?? source.settings.scope ?? (key === 'global' && source.policy !== undefined ? 'policy' : 'handler');
      const namespace = scope === 'policy' && source.policy !== undefined ? `p.${source.policy}` : scope === 'policy' ? 'g' : `h.${environment.handlerId}`;
      if (typeof limit !== 'function' && typeof limit !== 'number') throw new InvalidOptionError(`${path ? `${path}.` : ''}limit`, limit, 'an integer ≥ 1 or a function of the execution context');
      return { options: { ...engineOptions, name: storeName(`${namespace}.${label}`) } as RateLimitOptions, label, limit };
    });
    for (const { source, path } of members.slice(1)) {
      for (const option of ['cost', 'mode', 'skipSuccessful'] as const) {
        if (source.settings[option] !== firstSettings[option]) {
          throw new InvalidOptionError(`${path}.${option}`, source.settings[option], `the same ${option} as the other limits counting the same key (${String(firstSettings[option])})`);
        }
      }
    }
    const cost = firstSettings.cost ?? 1;
    if (typeof cost === 'number' && !(Number.isInteger(cost) && cost >= 1)) throw new InvalidOptionError(`${first.path ? `${first.path}.` : ''}cost`, cost, 'an integer ≥ 1 or a function of the execution context');
    const shadow = firstSettings.mode === 'shadow';
    if (firstSettings.mode !== undefined && firstSettings.mode !== 'shadow' && firstSettings.mode !== 'enforce') throw new InvalidOptionError(`${first.path ? `${first.path}.` : ''}mode`, firstSettings.mode, "'enforce' or 'shadow'");
    result.push(
      new LimitGroup(
        key,
        limits,
        cost,
        shadow,
        firstSettings.skipSuccessful === true,
        (options) => {
          const engine = new RateLimitPolicy(options.map((option) => ({ ...option, mode: shadow ? 'shadow' : 'enforce' })), { store: environment.store, clock: environment.clock, name: environment.handlerId });
          environment.onEngine?.(engine);
          return engine;
        },
        members.map((member) => member.path),
      ),
    );
  }
  return result;
}

/**
 * The rate limits of one handler: the guard's `check` decides a request against every group,
 * sets the headers once per decision, and throws the mapped 429 when refused.
 */
export class HandlerLimiter {
  /** The only group, when there is one (the usual case): decided without per-request arrays. */
  private readonly single: LimitGroup | undefined;
  private readonly ietfHeaders: boolean;
  private readonly legacyHeaders: boolean;
  private readonly refundsSuccesses: boolean;
  private readonly transports: TransportExceptions;

  /** Built by the module, one per decorated handler (and one for `globalRateLimit`). */
  constructor(
    /** The handler's limits, grouped by the client key they count. */
    readonly groups: readonly LimitGroup[],
    private readonly environment: LimiterEnvironment,
  ) {
    this.single = groups.length === 1 ? groups[0] : undefined;
    const mode = environment.headers;
    this.ietfHeaders = mode === 'ietf' || mode === 'both';
    this.legacyHeaders = mode === 'legacy' || mode === 'both';
    this.refundsSuccesses = groups.some((group) => group.skipSuccessful);
    this.transports = environment.transports ?? {};
  }

  /** Decides one request. Synchronous with a synchronous store. @throws the mapped rejection */
  check(context: ExecutionContext): boolean | Promise<boolean> {
    const single = this.single;
    if (single !== undefined) {
      const tier = single.tierFor(context);
      const key = this.keyOf(single, context);
      const answer = tier.engine.decide(key, single.costOf(context));
      if (answer instanceof Promise) return this.continueAsync(context, 0, answer, tier, key, [], [], []);
      return this.settleOne(context, single, tier, key, answer);
    }
    const groups = this.groups;
    const decisions: RateLimitDecision[] = [];
    const tiers: Tier[] = [];
    const keys: string[] = [];
    for (let index = 0; index < groups.length; index++) {
      const group = groups[index]!;
      const tier = group.tierFor(context);
      const key = this.keyOf(group, context);
      const answer = tier.engine.decide(key, group.costOf(context));
      if (answer instanceof Promise) return this.continueAsync(context, index, answer, tier, key, decisions, tiers, keys);
      decisions.push(answer);
      tiers.push(tier);
      keys.push(key);
      if (!answer.allowed && !group.shadow) break;
    }
    return this.settle(context, decisions, tiers, keys);
  }

  /** A policy view for provider methods: one budget per method (or policy), key `'global'`. */
  asPolicy(): KeyedPolicy {
    const engine = this.groups[0]!.tierFor(undefined).engine;
    return {
      execute: (fn, context) => executeWith((resolved) => engine.runWithKey('global', fn, resolved), context),
      run: (fn, context) => engine.runWithKey('global', fn, context),
      runWithKey: (key, fn, context) => engine.runWithKey(key, fn, context),
    };
  }

  /**
   * Forgets a client's usage: `key` is the IP, the user id, or what the key function returned
   * (for `'user'` and key functions, an IP also resets a client counted by its address because
   * it had no user or no key).
   */
  async reset(key: string): Promise<void> {
    const ip = normalizeIp(key, this.environment.ipv6Subnet);
    for (const group of this.groups) {
      const stored: string[] = [];
      if (group.key === 'ip') stored.push(ip ?? safeKeyPart(key));
      else if (group.key === 'user') stored.push(`u.${safeKeyPart(key)}`);
      else if (typeof group.key === 'function') stored.push(`k.${safeKeyPart(key)}`);
      else stored.push(group.key);
      if (typeof group.key === 'function' || group.key === 'user') {
        if (ip !== undefined && !stored.includes(ip)) stored.push(ip);
      }
      for (const tier of group.allTiers()) for (const entry of stored) await tier.engine.reset(entry);
    }
  }

  /** Limits and counters, for registries and introspection. */
  describe(): { limits: Array<{ name: string; limit: number; windowMs: number; algorithm: string }>; admitted: number; rejected: number } {
    const limits: Array<{ name: string; limit: number; windowMs: number; algorithm: string }> = [];
    let admitted = 0;
    let rejected = 0;
    for (const group of this.groups) {
      for (const tier of group.allTiers()) {
        tier.engine.options.limits.forEach((spec, index) => limits.push({ name: tier.labels[index]!, limit: spec.limit, windowMs: spec.windowMs, algorithm: spec.algorithm }));
        const stats = tier.engine.stats();
        admitted += stats.admitted;
        rejected += stats.rejected;
      }
    }
    return { limits, admitted, rejected };
  }

  private keyOf(group: LimitGroup, context: ExecutionContext): string {
    const kind = group.key;
    if (kind === 'ip') return clientIpOf(context, this.environment.ipv6Subnet, this.environment.clientIp) ?? 'unknown';
    if (kind === 'global' || kind === 'route') return kind;
    if (kind === 'user') {
      const user = userIdOf(context);
      return user === undefined ? (clientIpOf(context, this.environment.ipv6Subnet, this.environment.clientIp) ?? 'unknown') : `u.${safeKeyPart(user)}`;
    }
    const custom = kind(context);
    // Prefixed, like user ids, so a key function's value never shares a budget with an IP.
    return custom === undefined || custom === '' ? (clientIpOf(context, this.environment.ipv6Subnet, this.environment.clientIp) ?? 'unknown') : `k.${safeKeyPart(String(custom))}`;
  }

  private async continueAsync(
    context: ExecutionContext,
    from: number,
    pending: Promise<RateLimitDecision>,
    firstTier: Tier,
    firstKey: string,
    decisions: RateLimitDecision[],
    tiers: Tier[],
    keys: string[],
  ): Promise<boolean> {
    const groups = this.groups;
    let answer: RateLimitDecision | Promise<RateLimitDecision> = pending;
    for (let index = from; index < groups.length; index++) {
      const group = groups[index]!;
      const tier = index === from ? firstTier : group.tierFor(context);
      const key = index === from ? firstKey : this.keyOf(group, context);
      let decision: RateLimitDecision;
      try {
        if (index !== from) answer = tier.engine.decide(key, group.costOf(context));
        decision = await answer;
      } catch (error) {
        // The store failed (fail-closed: StoreUnavailableError; or a permanent error, which stays
        // loud): give back what the groups before charged, then answer the mapped error.
        this.refund(context, decisions, tiers, keys, decisions.length);
        throw this.mapped(error, context);
      }
      decisions.push(decision);
      tiers.push(tier);
      keys.push(key);
      if (!decision.allowed && !group.shadow) break;
    }
    return this.settle(context, decisions, tiers, keys);
  }

  /** {@link settle} for a handler with one group. */
  private settleOne(context: ExecutionContext, group: LimitGroup, tier: Tier, key: string, decision: RateLimitDecision): boolean {
    const refused = !decision.allowed && !group.shadow;
    if (context.getType() === 'http') {
      const response = context.getArgByIndex(1);
      if (this.ietfHeaders || this.legacyHeaders) {
        const retryAfterMs = decision.allowed || (refused && this.mappingWritesRetryAfter(decision)) ? undefined : decision.retryAfterMs;
        this.writeHeaders(response, tier.policyHeader, this.ietfHeaders ? remainingItems(tier, decision) : '', this.legacyHeaders ? tightestOf(decision, undefined) : undefined, retryAfterMs);
      }
      if (!refused && group.skipSuccessful && decision.allowed) {
        afterSuccess(response, () => void Promise.resolve(tier.engine.refund(key, group.costOf(context))).catch(() => undefined));
      }
    }
    if (refused) throw this.mapped(new RateLimitExceededError(tier.engine.name, decision), context);
    return true;
  }

  private settle(context: ExecutionContext, decisions: RateLimitDecision[], tiers: Tier[], keys: string[]): boolean {
    let refusedAt = -1;
    for (let index = 0; index < decisions.length; index++) {
      if (!decisions[index]!.allowed && !this.groups[index]!.shadow) {
        refusedAt = index;
        break;
      }
    }
    const http = context.getType() === 'http';
    const response = http ? context.getArgByIndex(1) : undefined;
    if (http && (this.ietfHeaders || this.legacyHeaders)) {
      let rateLimit = '';
      let policy = '';
      let tightest: LimitState | undefined;
      // Shadow groups that refused count too (their requests still ran).
      let retryAfterMs: number | undefined;
      for (let index = 0; index < decisions.length; index++) {
        const decision = decisions[index]!;
        const tier = tiers[index]!;
        if (!decision.allowed && decision.retryAfterMs !== undefined) retryAfterMs = Math.max(retryAfterMs ?? 0, decision.retryAfterMs);
        if (this.ietfHeaders) {
          rateLimit += `${rateLimit ? ', ' : ''}${remainingItems(tier, decision)}`;
          policy += `${policy ? ', ' : ''}${tier.policyHeader}`;
        }
        if (this.legacyHeaders) tightest = tightestOf(decision, tightest);
      }
      this.writeHeaders(response, policy, rateLimit, tightest, refusedAt >= 0 && this.mappingWritesRetryAfter(decisions[refusedAt]!) ? undefined : retryAfterMs);
    }
    if (refusedAt >= 0) {
      // All or nothing: give back what the groups before the refusing one charged.
      this.refund(context, decisions, tiers, keys, refusedAt);
      throw this.mapped(new RateLimitExceededError(tiers[refusedAt]!.engine.name, decisions[refusedAt]!), context);
    }
    if (http && this.refundsSuccesses) this.refundSuccessesLater(context, response, decisions, tiers, keys);
    return true;
  }

  /** Whether the default error mapping will write the refusing decision's `Retry-After` (then the limiter does not). */
  private mappingWritesRetryAfter(refused: RateLimitDecision): boolean {
    return refused.retryAfterMs !== undefined && this.environment.errorMapping === undefined;
  }

  /** The module's error mapping, or the default one, applied to a rejection. */
  private mapped(error: unknown, context: ExecutionContext): unknown {
    const mapping = this.environment.errorMapping;
    return mapping ? mapping(error, context) : mapError(error, context, this.transports);
  }

  /** Gives back the cost the first `count` groups charged. */
  private refund(context: ExecutionContext, decisions: RateLimitDecision[], tiers: Tier[], keys: string[], count: number): void {
    for (let index = 0; index < count; index++) {
      if (decisions[index]!.allowed) void Promise.resolve(tiers[index]!.engine.refund(keys[index]!, this.groups[index]!.costOf(context))).catch(() => undefined);
    }
  }

  private refundSuccessesLater(context: ExecutionContext, response: unknown, decisions: RateLimitDecision[], tiers: Tier[], keys: string[]): void {
    const refundable: number[] = [];
    for (let index = 0; index < decisions.length; index++) if (this.groups[index]!.skipSuccessful && decisions[index]!.allowed) refundable.push(index);
    if (refundable.length === 0) return;
    afterSuccess(response, () => {
      for (const index of refundable) void Promise.resolve(tiers[index]!.engine.refund(keys[index]!, this.groups[index]!.costOf(context))).catch(() => undefined);
    });
  }

  private writeHeaders(response: unknown, policy: string, rateLimit: string, tightest: LimitState | undefined, retryAfterMs: number | undefined): void {
    if (this.ietfHeaders) {
      setHeader(response, 'RateLimit-Policy', policy);
      setHeader(response, 'RateLimit', rateLimit);
    }
    if (this.legacyHeaders && tightest !== undefined) {
      setHeader(response, 'X-RateLimit-Limit', String(tightest.limit));
      setHeader(response, 'X-RateLimit-Remaining', String(tightest.remaining));
      setHeader(response, 'X-RateLimit-Reset', String(Math.ceil(tightest.resetMs / 1000)));
    }
    if (retryAfterMs !== undefined) setHeader(response, 'Retry-After', String(retryAfterSeconds(retryAfterMs)));
  }
}

/** One decision's items of the `RateLimit` header: `"label";r=<remaining>;t=<seconds to reset>` per limit. */
function remainingItems(tier: Tier, decision: RateLimitDecision): string {
  const limits = decision.limits;
  let items = '';
  for (let index = 0; index < limits.length; index++) {
    const state = limits[index]!;
    items += `${index === 0 ? '' : ', '}${tier.remainingPrefixes[index]}${state.remaining};t=${Math.ceil(state.resetMs / 1000)}`;
  }
  return items;
}

/** The limit with the fewest units left, among `decision`'s and `tightest` (the first wins a tie). */
function tightestOf(decision: RateLimitDecision, tightest: LimitState | undefined): LimitState | undefined {
  let result = tightest;
  for (const state of decision.limits) if (result === undefined || state.remaining < result.remaining) result = state;
  return result;
}

/** Runs `refund` once the HTTP response has finished with a status below 400. */
function afterSuccess(response: unknown, refund: () => void): void {
  const raw = ((response as { raw?: unknown }).raw ?? response) as { statusCode?: number; once?: (event: string, listener: () => void) => void };
  if (typeof raw?.once !== 'function') return;
  raw.once('finish', () => {
    if ((raw.statusCode ?? 500) < 400) refund();
  });
}
