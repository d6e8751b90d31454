import ts from 'typescript';

/** A name of the public API and where it is declared (relative to the root given to {@link analyse}). */
export interface ApiItem {
  /** `Symbol`, `Class.member`, `Interface.property`, `Class.constructor`. */
  readonly name: string;
  readonly file: string;
  readonly documented: boolean;
}

/** One property of a public option type. */
export interface OptionItem extends ApiItem {
  /** The option type it was found on (`CircuitBreakerOptions`). */
  readonly owner: string;
  /** The property's own name (`openDuration`). */
  readonly property: string;
  /** Declared outside the analysed sources (a Nest interface the option type extends). */
  readonly external: boolean;
}

export interface PublicApi {
  /** Every export of the entry points, aliases resolved, each once. */
  readonly exports: ApiItem[];
  /** Public members of exported classes, interfaces and object types, each declaration once. */
  readonly members: ApiItem[];
  /** Option types: exported ones by name, and the named option types their properties reach. */
  readonly optionTypes: string[];
  /** Every property of every option type, inherited ones included. */
  readonly options: OptionItem[];
}

/** Names of option types: the suffixes of the public option interfaces, and the module's extras. */
export const OPTION_TYPE = /(Options|Settings|Definition|Defaults|Dependencies|Extras)$/;

/**
 * Reads the public API of the entry points with the compiler: what is exported, which of it has
 * TSDoc, and every property of the option types. Only declarations under `sourceRoot` are judged;
 * symbol-keyed members and members tagged `@internal` are not part of the API.
 */
export function analyse(entries: readonly string[], compilerOptions: ts.CompilerOptions, sourceRoot: string): PublicApi {
  const program = ts.createProgram(entries, { ...compilerOptions, noEmit: true });
  const checker = program.getTypeChecker();
  const own = (node: ts.Node): boolean => node.getSourceFile().fileName.startsWith(sourceRoot);
  const fileOf = (node: ts.Node | undefined): string => (node === undefined ? '?' : node.getSourceFile().fileName.slice(sourceRoot.length));
  const summary = (symbol: ts.Symbol): string => ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim();

  const exports: ApiItem[] = [];
  const members: ApiItem[] = [];
  const seenExports = new Set<ts.Symbol>();
  const seenMembers = new Set<ts.Node>();
  const optionRoots: Array<{ name: string; symbol: ts.Symbol }> = [];

  const addMember = (owner: string, member: ts.Symbol): void => {
    const declaration = member.declarations?.[0];
    if (declaration === undefined || !own(declaration) || seenMembers.has(declaration)) return;
    if (isHidden(declaration)) return;
    seenMembers.add(declaration);
    members.push({ name: `${owner}.${member.name}`, file: fileOf(declaration), documented: summary(member) !== '' });
  };

  for (const entry of entries) {
    const source = program.getSourceFile(entry);
    if (source === undefined) throw new Error(`entry point not found: ${entry}`);
    const module = checker.getSymbolAtLocation(source);
    if (module === undefined) throw new Error(`not a module: ${entry}`);
    for (const exported of checker.getExportsOfModule(module)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      if (seenExports.has(symbol)) continue;
      seenExports.add(symbol);
      const declaration = symbol.declarations?.[0];
      // A destructured binding cannot carry TSDoc; its export specifier can.
      exports.push({ name: exported.name, file: fileOf(declaration), documented: summary(symbol) !== '' || summary(exported) !== '' });
      if (OPTION_TYPE.test(exported.name) && symbol.flags & (ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias)) optionRoots.push({ name: exported.name, symbol });

      if (symbol.flags & ts.SymbolFlags.Class && declaration !== undefined && ts.isClassDeclaration(declaration)) {
        for (const member of checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(symbol))) addMember(exported.name, member);
        for (const member of checker.getPropertiesOfType(checker.getTypeOfSymbol(symbol))) {
          if (member.name !== 'prototype') addMember(exported.name, member);
        }
        for (const constructor of declaration.members.filter(ts.isConstructorDeclaration)) {
          if (constructor.parameters.length === 0 || isHidden(constructor)) continue;
          members.push({ name: `${exported.name}.constructor`, file: fileOf(constructor), documented: ts.getJSDocCommentsAndTags(constructor).some(hasText) });
        }
      } else if (symbol.flags & (ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias)) {
        for (const type of objectTypes(checker.getDeclaredTypeOfSymbol(symbol))) {
          for (const member of checker.getPropertiesOfType(type)) addMember(exported.name, member);
        }
      }
    }
  }

  // Option types reached through the properties of option types (a policy's `circuitBreaker`).
  const optionTypes = new Map<string, ts.Type>();
  const queue = optionRoots.map(({ name, symbol }) => ({ name, type: checker.getDeclaredTypeOfSymbol(symbol) }));
  while (queue.length > 0) {
    const { name, type } = queue.shift()!;
    if (optionTypes.has(name)) continue;
    optionTypes.set(name, type);
    for (const objectType of objectTypes(type)) {
      for (const property of checker.getPropertiesOfType(objectType)) {
        for (const reached of namedTypes(checker.getNonNullableType(checker.getTypeOfSymbol(property)))) {
          const reachedName = reached.aliasSymbol?.name ?? reached.getSymbol()?.name;
          if (reachedName !== undefined && OPTION_TYPE.test(reachedName) && !optionTypes.has(reachedName)) queue.push({ name: reachedName, type: reached });
        }
      }
    }
  }

  const options: OptionItem[] = [];
  for (const [owner, type] of optionTypes) {
    const seen = new Set<string>();
    for (const objectType of objectTypes(type)) {
      for (const property of checker.getPropertiesOfType(objectType)) {
        if (seen.has(property.name)) continue;
        seen.add(property.name);
        const declaration = property.declarations?.[0];
        options.push({
          owner,
          property: property.name,
          name: `${owner}.${property.name}`,
          file: fileOf(declaration),
          documented: summary(property) !== '',
          external: declaration === undefined || !own(declaration),
        });
      }
    }
  }

  return { exports, members, optionTypes: [...optionTypes.keys()], options };
}

/** The object types of a type: itself, or the object members of a union; never functions or primitives. */
function objectTypes(type: ts.Type): ts.Type[] {
  if (type.isUnion()) return type.types.flatMap(objectTypes);
  if (!(type.flags & ts.TypeFlags.Object)) return [];
  if (type.getCallSignatures().length > 0 && type.getProperties().length === 0) return [];
  return [type];
}

/** The named types a property's type is made of: union members and array elements included. */
function namedTypes(type: ts.Type): ts.Type[] {
  if (type.isUnion()) return type.types.flatMap(namedTypes);
  const element = (type as ts.TypeReference).typeArguments;
  if (type.getSymbol()?.name === 'Array' && element !== undefined) return element.flatMap(namedTypes);
  return type.flags & ts.TypeFlags.Object ? [type] : [];
}

/** Private, protected, `#private`, symbol-keyed (reachable only through unexported symbols) or `@internal`. */
function isHidden(declaration: ts.Declaration): boolean {
  if (ts.getCombinedModifierFlags(declaration) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) return true;
  const name = ts.getNameOfDeclaration(declaration);
  if (name !== undefined && (ts.isPrivateIdentifier(name) || ts.isComputedPropertyName(name))) return true;
  return ts.getJSDocTags(declaration).some((tag) => tag.tagName.text === 'internal');
}

function hasText(doc: ts.JSDoc | ts.JSDocTag): boolean {
  const text = (ts.getTextOfJSDocComment(doc.comment) ?? '').trim() !== '';
  return ts.isJSDoc(doc) ? text || (doc.tags ?? []).some(hasText) : text;
}
