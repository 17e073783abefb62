// Imports point down only (style.md, "Layout"). Scans every module under src/ with the
// TypeScript parser (static imports, re-exports, dynamic import()) and checks each edge
// against the layer table below; a new directory under src/ must be added to it.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

// dist/test/unit/imports.test.js -> the repository root.
const SRC = fileURLToPath(new URL('../../../src', import.meta.url));

type Layer = 'base' | 'io' | 'format' | 'engine' | 'check' | 'ops' | 'api' | 'nbd/protocol' | 'nbd/server' | 'cli' | 'index';

/** What each layer may import besides itself. 'engine:type' = type-only imports of engine. */
const ALLOWED: Record<Layer, string[]> = {
  base: [],
  io: ['base'],
  format: ['base'],
  engine: ['base', 'io', 'format'],
  check: ['base', 'io', 'format'],
  ops: ['base', 'io', 'format', 'engine', 'check'],
  api: ['base', 'io', 'format', 'engine', 'check', 'ops'],
  'nbd/protocol': ['base'],
  'nbd/server': ['base', 'nbd/protocol', 'engine:type'],
  cli: ['base', 'io', 'format', 'engine', 'check', 'ops', 'api', 'nbd/protocol', 'nbd/server', 'index'],
  index: ['base', 'io', 'format', 'engine', 'check', 'ops', 'api', 'nbd/protocol', 'nbd/server'],
};

/** Only these layers may touch the file system (style.md point 1). */
const MAY_USE_FS: Layer[] = ['io', 'cli'];
const FS_MODULES = new Set(['fs', 'node:fs', 'fs/promises', 'node:fs/promises']);

function layerOf(file: string): Layer | null {
  const rel = relative(SRC, file).split(sep);
  if (rel.length === 1) return rel[0] === 'index.ts' || rel[0] === 'core.ts' ? 'index' : null;
  if (rel[0] === 'nbd') return rel[1] === 'protocol' || rel[1] === 'server' ? (`nbd/${rel[1]}` as Layer) : null;
  return (['base', 'io', 'format', 'engine', 'check', 'ops', 'api', 'cli'] as const).find((l) => l === rel[0]) ?? null;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    return e.isDirectory() ? sources(path) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

interface Edge { specifier: string; typeOnly: boolean; line: number }

function importsOf(file: string): Edge[] {
  return importsOfText(file, readFileSync(file, 'utf8'));
}

function importsOfText(file: string, text: string): Edge[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const edges: Edge[] = [];
  const lineOf = (node: ts.Node) => source.getLineAndCharacterOfPosition(node.getStart()).line + 1;
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      // `import type {...}` or `import { type A, type B }` with nothing else: erased at runtime.
      const allTypeNamed = !!clause?.namedBindings && ts.isNamedImports(clause.namedBindings)
        && clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly) && !clause.name;
      edges.push({ specifier: node.moduleSpecifier.text, typeOnly: !!clause?.isTypeOnly || allTypeNamed, line: lineOf(node) });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      edges.push({ specifier: node.moduleSpecifier.text, typeOnly: node.isTypeOnly, line: lineOf(node) });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      edges.push({ specifier: arg && ts.isStringLiteralLike(arg) ? arg.text : '<computed>', typeOnly: false, line: lineOf(node) });
    } else if (ts.isImportEqualsDeclaration(node)) {
      edges.push({ specifier: node.moduleReference.getText(source), typeOnly: node.isTypeOnly, line: lineOf(node) });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

const files = sources(SRC);

test('every module under src/ belongs to a layer of style.md', () => {
  assert.ok(files.length >= 20, `found only ${files.length} modules under ${SRC}`);
  const unplaced = files.filter((f) => layerOf(f) === null).map((f) => relative(SRC, f));
  assert.deepEqual(unplaced, [], 'modules outside the known layers');
});

/** The layering violations of one module's imports. */
function violationsOf(file: string, edges: Edge[]): string[] {
  const from = layerOf(file);
  if (from === null) return [];
  const violations: string[] = [];
  for (const edge of edges) {
    const where = `${relative(SRC, file)}:${edge.line} imports '${edge.specifier}'`;
    if (edge.specifier === '<computed>') { violations.push(`${where}: computed dynamic import`); continue; }
    if (!edge.specifier.startsWith('.')) {
      // A package or a Node built-in: base imports nothing at all.
      if (from === 'base') violations.push(`${where}: base imports nothing`);
      if (FS_MODULES.has(edge.specifier) && !MAY_USE_FS.includes(from)) violations.push(`${where}: only src/io and src/cli touch the file system`);
      continue;
    }
    const target = resolve(dirname(file), edge.specifier.replace(/\.js$/, '.ts'));
    if (!target.startsWith(SRC + sep)) { violations.push(`${where}: outside src/`); continue; }
    const to = layerOf(target);
    if (to === null) { violations.push(`${where}: into no layer`); continue; }
    if (to === from) continue;
    const allowed = ALLOWED[from];
    if (allowed.includes(to) || (edge.typeOnly && allowed.includes(`${to}:type`))) continue;
    violations.push(`${where}: ${from} may not import ${to}${edge.typeOnly ? ' (even type-only)' : ''}`);
  }
  return violations;
}

test('imports point down only: each layer imports only the layers below it', () => {
  let edgesSeen = 0;
  const violations = files.flatMap((file) => {
    const edges = importsOf(file);
    edgesSeen += edges.length;
    return violationsOf(file, edges).filter((v) => !v.includes('file system'));
  });
  assert.ok(edgesSeen >= 50, `only ${edgesSeen} imports found: is the scan working?`);
  assert.deepEqual(violations, []);
});

test('nothing under src/ touches node:fs except src/io and src/cli', () => {
  const violations: string[] = [];
  for (const file of files) {
    const layer = layerOf(file);
    if (layer !== null && MAY_USE_FS.includes(layer)) continue;
    for (const edge of importsOf(file)) {
      if (FS_MODULES.has(edge.specifier)) violations.push(`${relative(SRC, file)}:${edge.line} imports '${edge.specifier}'`);
    }
  }
  assert.deepEqual(violations, []);
});

test('the scanner sees static, type-only, re-export and dynamic imports, and flags upward ones', () => {
  const probe = join(SRC, 'engine', 'probe.ts');
  const text = [
    "import a from './x.js';",
    "import type { B } from '../io/y.js';",
    "import { type C } from '../ops/z.js';",
    "export * from '../cli/w.js';",
    "import { readFile } from 'node:fs/promises';",
    "const m = await import('../check/check.js');",
  ].join('\n');
  const edges = importsOfText(probe, text);
  assert.deepEqual(edges.map((e) => [e.specifier, e.typeOnly, e.line]), [
    ['./x.js', false, 1], ['../io/y.js', true, 2], ['../ops/z.js', true, 3], ['../cli/w.js', false, 4],
    ['node:fs/promises', false, 5], ['../check/check.js', false, 6],
  ]);
  assert.deepEqual(violationsOf(probe, edges).map((v) => v.replace(/^.*imports /, '')), [
    "'../ops/z.js': engine may not import ops (even type-only)",
    "'../cli/w.js': engine may not import cli",
    "'node:fs/promises': only src/io and src/cli touch the file system",
    "'../check/check.js': engine may not import check",
  ]);
  // nbd/server may use engine types, not engine code.
  const server = join(SRC, 'nbd', 'server', 'probe.ts');
  assert.deepEqual(violationsOf(server, importsOfText(server, "import type { BlockDevice } from '../../engine/device.js';")), []);
  assert.equal(violationsOf(server, importsOfText(server, "import { QedImage } from '../../engine/qed-image.js';")).length, 1);
});

/** Every module reachable from `entry` through imports that survive compilation (type-only ones are erased). */
function runtimeClosure(entry: string): { modules: string[]; external: Array<{ from: string; specifier: string }> } {
  const seen = new Set<string>();
  const external: Array<{ from: string; specifier: string }> = [];
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const edge of importsOf(file)) {
      if (edge.typeOnly) continue;
      if (!edge.specifier.startsWith('.')) { external.push({ from: relative(SRC, file), specifier: edge.specifier }); continue; }
      visit(resolve(dirname(file), edge.specifier.replace(/\.js$/, '.ts')));
    }
  };
  visit(entry);
  return { modules: [...seen].map((f) => relative(SRC, f)), external };
}

test('the portable core (core.ts, the non-Node entry of the package) loads no Node module at all', () => {
  const { modules, external } = runtimeClosure(join(SRC, 'core.ts'));
  assert.ok(modules.includes(join('engine', 'qed-image.ts')) && modules.includes(join('ops', 'open.ts')), 'the engine and the operations are in the core');
  assert.deepEqual(external, [], 'runtime imports of packages or Node built-ins from the core');
  const nodeEntry = runtimeClosure(join(SRC, 'index.ts'));
  assert.ok(nodeEntry.external.some((e) => e.specifier.startsWith('node:')), 'the Node entry does load Node modules (the scan sees them)');
});
