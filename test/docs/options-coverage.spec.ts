// Every public option is documented twice — a TSDoc comment where it is declared and a row in the
// docs page of its pattern — and every symbol of the entry points has TSDoc. The API is read with
// the TypeScript compiler from the five entry points, so an option added to an interface (or to
// an interface it extends) without documentation fails here, listed by name.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyse, type OptionItem, type PublicApi } from './support/public-api.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const ENTRY_POINTS = ['index', 'redis', 'prometheus', 'terminus', 'opentelemetry'].map((name) => join(root, 'lib', `${name}.ts`));

/**
 * Where each option type is documented. `table`: each option must be the first cell of a table
 * row of one of the pages (an options table); `mention`: named in backticks somewhere in them
 * (resolved forms, whose options are the documented inputs, and containers whose keys are
 * patterns). A new option type fails the test until it is given a page here.
 */
const PAGES: Pages = {
  ResilienceModuleOptions: { pages: ['README.md'], level: 'table' },
  ResilienceModuleExtras: { pages: ['README.md'], level: 'table' },
  HttpOptions: { pages: ['README.md'], level: 'table' },
  PolicyDefinition: { pages: ['README.md'], level: 'mention' },
  PolicyDefaults: { pages: ['README.md'], level: 'mention' },
  PolicyDependencies: { pages: ['docs/testing.md'], level: 'mention' },

  RateLimitOptions: { pages: ['docs/rate-limit.md'], level: 'table' },
  RateLimitSettings: { pages: ['docs/rate-limit.md'], level: 'table' },
  ResolvedRateLimitOptions: { pages: ['docs/rate-limit.md'], level: 'mention' },
  RateLimitDependencies: { pages: ['docs/rate-limit.md'], level: 'mention' },
  MemoryStoreOptions: { pages: ['docs/rate-limit.md'], level: 'table' },

  CircuitBreakerOptions: { pages: ['docs/circuit-breaker.md'], level: 'table' },
  CircuitBreakerSettings: { pages: ['docs/circuit-breaker.md'], level: 'table' },
  ResolvedCircuitBreakerOptions: { pages: ['docs/circuit-breaker.md'], level: 'mention' },
  SharedCircuitBreakerOptions: { pages: ['docs/circuit-breaker.md', 'docs/redis.md'], level: 'table' },
  SharedCircuitBreakerDependencies: { pages: ['docs/circuit-breaker.md', 'docs/redis.md'], level: 'table' },

  RetryOptions: { pages: ['docs/retry.md'], level: 'table' },
  RetrySettings: { pages: ['docs/retry.md'], level: 'table' },
  BackoffSettings: { pages: ['docs/retry.md'], level: 'table' },
  ResolvedRetryOptions: { pages: ['docs/retry.md'], level: 'mention' },

  TimeoutOptions: { pages: ['docs/timeout.md'], level: 'table' },

  BulkheadOptions: { pages: ['docs/bulkhead.md'], level: 'table' },
  BulkheadSettings: { pages: ['docs/bulkhead.md'], level: 'table' },
  ResolvedBulkheadOptions: { pages: ['docs/bulkhead.md'], level: 'mention' },
  DistributedBulkheadOptions: { pages: ['docs/bulkhead.md', 'docs/redis.md'], level: 'table' },
  DistributedBulkheadDependencies: { pages: ['docs/bulkhead.md', 'docs/redis.md'], level: 'table' },

  AdaptiveLimitOptions: { pages: ['docs/adaptive-concurrency.md'], level: 'table' },
  AdaptiveBulkheadOptions: { pages: ['docs/adaptive-concurrency.md'], level: 'table' },
  ResolvedAdaptiveLimitOptions: { pages: ['docs/adaptive-concurrency.md'], level: 'mention' },

  FallbackOptions: { pages: ['docs/fallback.md'], level: 'table' },
  FallbackSettings: { pages: ['docs/fallback.md'], level: 'table' },
  ResolvedFallbackOptions: { pages: ['docs/fallback.md'], level: 'mention' },

  RedisStoreOptions: { pages: ['docs/redis.md'], level: 'table' },

  LoadSheddingOptions: { pages: ['docs/load-shedding.md'], level: 'table' },
  LoadSheddingPolicyOptions: { pages: ['docs/load-shedding.md'], level: 'table' },
  ResolvedLoadSheddingOptions: { pages: ['docs/load-shedding.md'], level: 'mention' },
  PrioritySettings: { pages: ['docs/load-shedding.md'], level: 'mention' },

  RetryBudgetOptions: { pages: ['docs/retry-budget.md'], level: 'table' },
  RetryBudgetSettings: { pages: ['docs/retry-budget.md'], level: 'table' },
  ResolvedRetryBudgetOptions: { pages: ['docs/retry-budget.md'], level: 'mention' },
  RedisRetryBudgetDependencies: { pages: ['docs/retry-budget.md'], level: 'table' },
  HedgeOptions: { pages: ['docs/hedge.md'], level: 'table' },
  HedgeSettings: { pages: ['docs/hedge.md'], level: 'table' },
  ResolvedHedgeOptions: { pages: ['docs/hedge.md'], level: 'mention' },

  DeadlinePropagationOptions: { pages: ['docs/deadline-propagation.md'], level: 'table' },
  DeadlineHeaderOptions: { pages: ['docs/deadline-propagation.md'], level: 'table' },
  LiveConfigOptions: { pages: ['docs/live-config.md'], level: 'table' },
  LiveConfigDependencies: { pages: ['docs/live-config.md'], level: 'mention' },
  LiveConfigPublishOptions: { pages: ['docs/live-config.md'], level: 'table' },

  ChaosOptions: { pages: ['docs/chaos.md'], level: 'table' },
  ChaosLatencyOptions: { pages: ['docs/chaos.md'], level: 'table' },
  ChaosErrorOptions: { pages: ['docs/chaos.md'], level: 'table' },
  ChaosAbortOptions: { pages: ['docs/chaos.md'], level: 'table' },
  ChaosModuleOptions: { pages: ['docs/chaos.md'], level: 'table' },
  ChaosDependencies: { pages: ['docs/chaos.md'], level: 'table' },
  ChaosSettings: { pages: ['docs/chaos.md'], level: 'mention' },

  ResiliencePrometheusOptions: { pages: ['docs/observability.md'], level: 'table' },
  ResiliencePrometheusAsyncOptions: { pages: ['docs/observability.md'], level: 'table' },
  CircuitBreakerHealthOptions: { pages: ['docs/observability.md'], level: 'table' },
  ResilienceStoreHealthOptions: { pages: ['docs/observability.md'], level: 'table' },
  ResilienceTracingOptions: { pages: ['docs/observability.md'], level: 'table' },
  ResilienceLoggingOptions: { pages: ['docs/observability.md'], level: 'table' },
  ResilienceIntrospectionOptions: { pages: ['docs/observability.md'], level: 'table' },
};

/** Option types the analysis must find: a guard against a test that checks nothing. */
const KNOWN_OPTION_TYPES = ['ResilienceModuleOptions', 'CircuitBreakerSettings', 'RateLimitSettings', 'RedisStoreOptions', 'ResiliencePrometheusOptions', 'ResilienceTracingOptions'];

function compilerOptions(): ts.CompilerOptions {
  const parsed = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
    throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
  } });
  if (parsed === undefined) throw new Error('tsconfig.json could not be read');
  return parsed.options;
}

/** The first cell of every table row of a page, and every backticked span. */
function indexPage(text: string): { rows: string[]; spans: string[] } {
  const rows = text
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .map((line) => line.split('|')[1]!.trim());
  const spans = [...text.matchAll(/`([^`\n]+)`/g)].map((match) => match[1]!);
  return { rows, spans };
}

/**
 * A table row whose first cell names the option: `` `name` ``, or a dotted path through it
 * (`` `http.headers` `` documents both `http` and `headers`).
 */
function inTable(rows: readonly string[], option: string): boolean {
  return rows.some((cell) => [...cell.matchAll(/`([^`]+)`/g)].some((match) => match[1]!.split('.').includes(option)));
}

function mentioned(spans: readonly string[], option: string): boolean {
  const word = new RegExp(`(^|[^\\w$])${option.replace(/[$]/g, '\\$')}($|[^\\w$])`);
  return spans.some((span) => word.test(span));
}

type Pages = Record<string, { pages: string[]; level: 'table' | 'mention' }>;

function undocumentedInPages(api: PublicApi, pages: Pages, read: (page: string) => string): string[] {
  const indexed = new Map<string, { rows: string[]; spans: string[] }>();
  const pageIndex = (page: string) => {
    let index = indexed.get(page);
    if (index === undefined) indexed.set(page, (index = indexPage(read(page))));
    return index;
  };
  return api.options
    .filter((option: OptionItem) => {
      const where = pages[option.owner];
      if (where === undefined) return false; // reported by the mapping test
      return !where.pages.some((page) => {
        const { rows, spans } = pageIndex(page);
        return where.level === 'table' ? inTable(rows, option.property) : mentioned(spans, option.property);
      });
    })
    .map((option) => `${option.name} (${pages[option.owner]!.pages.join(' or ')})`);
}

const readRepoFile = (page: string): string => readFileSync(join(root, page), 'utf8');

/** Relative links of `pages` whose file does not exist, or whose `#anchor` is no heading of a Markdown file. */
function brokenLinks(pages: readonly string[], read: (file: string) => string, exists: (file: string) => boolean): string[] {
  return pages.flatMap((page) =>
    [...read(page).matchAll(/\]\(([^)\s]+)\)/g)]
      .map((match) => match[1]!)
      .filter((target) => !/^[a-z]+:/.test(target))
      .filter((target) => {
        const [path, anchor] = target.split('#') as [string, string | undefined];
        const file = path === '' ? page : posix.join(posix.dirname(page), path);
        if (!exists(file)) return true;
        return anchor !== undefined && file.endsWith('.md') && !headingSlugs(read(file)).has(anchor);
      })
      .map((target) => `${page} → ${target}`),
  );
}

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as `-`, repeats numbered. */
function headingSlugs(text: string): Set<string> {
  const slugs = new Set<string>();
  const counts = new Map<string, number>();
  const withoutCode = text.replace(/^```[\s\S]*?^```/gm, '');
  for (const [, heading] of withoutCode.matchAll(/^#{1,6} +(.+?) *$/gm)) {
    const base = heading!.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const seen = counts.get(base) ?? 0;
    counts.set(base, seen + 1);
    slugs.add(seen === 0 ? base : `${base}-${seen}`);
  }
  return slugs;
}

describe('the public API, read from the entry points', () => {
  let api: PublicApi;

  beforeAll(() => {
    api = analyse(ENTRY_POINTS, compilerOptions(), join(root, 'lib') + '/');
  }, 60_000);

  it('finds the option types of every entry point, and assigns each a docs page', () => {
    expect(api.optionTypes).toEqual(expect.arrayContaining(KNOWN_OPTION_TYPES));
    expect(api.options.length).toBeGreaterThan(150);
    expect(api.optionTypes.filter((name) => PAGES[name] === undefined)).toEqual([]);
    // A page listed here that no longer has an option type is a stale entry.
    expect(Object.keys(PAGES).filter((name) => !api.optionTypes.includes(name))).toEqual([]);
  });

  it('every option has a TSDoc comment where it is declared', () => {
    const missing = api.options.filter((option) => !option.external && !option.documented).map((option) => `${option.name} (lib/${option.file})`);
    expect(missing).toEqual([]);
  });

  it('every option is documented in the docs page of its pattern', () => {
    expect(undocumentedInPages(api, PAGES, readRepoFile)).toEqual([]);
  });

  it('every export of the entry points has TSDoc', () => {
    expect(api.exports.length).toBeGreaterThan(150);
    expect(api.exports.filter((item) => !item.documented).map((item) => `${item.name} (lib/${item.file})`)).toEqual([]);
  });

  it('every public member of the exported classes, interfaces and object types has TSDoc', () => {
    expect(api.members.length).toBeGreaterThan(400);
    expect(api.members.filter((item) => !item.documented).map((item) => `${item.name} (lib/${item.file})`)).toEqual([]);
  });

  it('every relative link of the docs and the README reaches an existing file and heading', () => {
    const pages = ['README.md', ...readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];
    expect(brokenLinks(pages, readRepoFile, (file) => existsSync(join(root, file)))).toEqual([]);
  });

  it('every page the docs index links exists, and every docs page is linked from the index', () => {
    const index = readRepoFile('docs/README.md');
    const linked = [...index.matchAll(/\]\(([\w-]+\.md)\)/g)].map((match) => match[1]!);
    const pages = readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md') && name !== 'README.md');
    expect(pages.filter((page) => !linked.includes(page))).toEqual([]);
    expect(linked.filter((page) => !pages.includes(page))).toEqual([]);
  });
});

describe('the analysis itself', () => {
  // A fixture with one gap of each kind: the checks above would pass vacuously if these went unseen.
  let dir: string;
  let api: PublicApi;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nest-resilience-docs-'));
    writeFileSync(
      join(dir, 'index.ts'),
      [
        '/** Documented. */',
        'export interface BaseOptions {',
        '  /** Documented. */',
        '  documented?: number;',
        '  undocumentedInherited?: string;',
        '}',
        '/** Documented. */',
        'export interface WidgetOptions extends BaseOptions {',
        '  /** @default 1 */',
        '  onlyADefault?: number;',
        '  nested?: NestedSettings;',
        '}',
        '/** Not exported, reached through WidgetOptions.nested. */',
        'interface NestedSettings {',
        '  deep?: boolean;',
        '}',
        'export function undocumentedFunction(): void {}',
        '/** Documented. */',
        'export class Widget {',
        '  /** Documented. */',
        '  readonly size = 1;',
        '  undocumentedMethod(): void {}',
        '  private hidden(): void {}',
        '  /** @internal */',
        '  internalMember(): void {}',
        '  constructor(readonly options: WidgetOptions) {}',
        '}',
      ].join('\n'),
    );
    api = analyse([join(dir, 'index.ts')], { strict: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext }, dir + '/');
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reports undocumented exports, members, constructors and options, inherited and nested ones included', () => {
    expect(api.exports.filter((item) => !item.documented).map((item) => item.name)).toEqual(['undocumentedFunction']);
    expect(api.members.filter((item) => !item.documented).map((item) => item.name).toSorted()).toEqual(
      ['BaseOptions.undocumentedInherited', 'Widget.constructor', 'Widget.options', 'Widget.undocumentedMethod', 'WidgetOptions.nested', 'WidgetOptions.onlyADefault'].toSorted(),
    );
    expect(api.optionTypes.toSorted()).toEqual(['BaseOptions', 'NestedSettings', 'WidgetOptions']);
    expect(api.options.filter((item) => !item.documented).map((item) => item.name).toSorted()).toEqual(
      ['BaseOptions.undocumentedInherited', 'NestedSettings.deep', 'WidgetOptions.nested', 'WidgetOptions.onlyADefault', 'WidgetOptions.undocumentedInherited'].toSorted(),
    );
  });

  it('reports links to missing files and headings, and accepts GitHub-style anchors', () => {
    const files: Record<string, string> = {
      'docs/a.md': '# A page\n\n## Own: `heading`\n\n[ok](b.md#the-other-page) [ok](#own-heading) [ok](../README.md) [web](https://example.com)\n[bad](b.md#nowhere) [bad](missing.md) [bad](#not-here)\n',
      'docs/b.md': '# The other page\n```\n# not a heading\n```\n',
      'README.md': '',
    };
    const broken = brokenLinks(['docs/a.md'], (file) => files[file]!, (file) => file in files);
    expect(broken).toEqual(['docs/a.md → b.md#nowhere', 'docs/a.md → missing.md', 'docs/a.md → #not-here']);
    expect([...headingSlugs(files['docs/b.md']!)]).toEqual(['the-other-page']);
  });

  it('reports an option missing from its page, and accepts one in a table row or a dotted path', () => {
    const page = ['| option | meaning |', '|---|---|', '| `documented` | yes |', '| `nested.deep` | yes |', '', 'Text naming `onlyADefault` outside a table.'].join('\n');
    const onPage = { pages: ['page.md'], level: 'table' as const };
    const missing = undocumentedInPages(api, { WidgetOptions: onPage, NestedSettings: onPage }, () => page);
    expect(missing.toSorted()).toEqual(['WidgetOptions.onlyADefault (page.md)', 'WidgetOptions.undocumentedInherited (page.md)']);
  });
});
