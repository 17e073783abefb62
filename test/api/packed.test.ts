// The package as npm delivers it: packed, installed into an empty project, used from a strict
// TypeScript program (await using, for await over block status, a convert with progress and
// an abort), from CommonJS, and through the installed `qed` bin; and installed where the
// native addon cannot be compiled.
import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { run, scratchDir, type RunResult } from '../support/qemu.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

const PROGRAM = `
import { AbortError, QedError, convert, createImage, openImage, type ChainExtent, type Image } from 'qed-image';

const dir = process.argv[2]!;
await createImage(\`\${dir}/a.qed\`, { size: 32 * 1024 * 1024, exclusive: true });
{
  await using disk: Image = await openImage(\`\${dir}/a.qed\`);
  await disk.write(new Uint8Array(1024 * 1024).fill(9), 4 * 1024 * 1024);
  const runs: ChainExtent[] = [];
  for await (const run of disk.blockStatus()) runs.push(run);
  console.log('runs', runs.map((r) => \`\${r.start}:\${r.length}:\${r.data}\`).join(' '));
}
let last = 0;
await convert(\`\${dir}/a.qed\`, \`\${dir}/a.raw\`, { onProgress: (done: number) => { last = done; } });
console.log('progress', last);
const controller = new AbortController();
controller.abort();
try {
  await convert(\`\${dir}/a.qed\`, \`\${dir}/b.raw\`, { signal: controller.signal });
} catch (err) {
  if (err instanceof AbortError && err instanceof QedError) console.log('aborted', err.code);
}
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmitOnError: true,
    lib: ['ES2022', 'esnext.disposable'], types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')], outDir: 'out',
  },
  files: ['main.ts'],
};

async function ok(what: string, pending: Promise<RunResult>): Promise<RunResult> {
  const result = await pending;
  assert.equal(result.code, 0, `${what}: ${result.stderr}${result.stdout}`);
  return result;
}

async function packInto(dir: string): Promise<string> {
  const packed = await ok('npm pack', run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT }));
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const files = info!.files.map((f) => f.path);
  assert.ok(files.includes('LICENSE') && files.includes('README.md') && files.includes('dist/src/index.js') && files.includes('dist/src/index.d.ts'));
  for (const file of ['dist/src/cli/qed.cjs', 'dist/src/cli/qed-bundle.cjs', 'dist/src/cli/qed-v8-flags.cjs', 'dist/src/cli/qed-bundle.batch.cache', 'dist/src/cli/qed-bundle.loop.cache']) {
    assert.ok(files.includes(file), `the bin, its bundle, its V8 flags and their code caches are packed: ${file}`);
  }
  assert.deepEqual(files.filter((f) => /\.map$|^dist\/test\/|^dist\/bench\/|^test\/|^src\//.test(f)), [], 'nothing test-only, no sources or maps');
  return join(dir, info!.filename);
}

async function project(dir: string, tarball: string, env: Record<string, string> = {}): Promise<RunResult> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module' }));
  return ok('npm install', run('env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'npm', 'install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', tarball], { cwd: dir }));
}

test('the packed package installs, type-checks a strict program, runs it, and its qed bin works', async (t) => {
  const dir = await scratchDir(t);
  const tarball = await packInto(dir);
  const app = join(dir, 'app');
  await project(app, tarball);
  await writeFile(join(app, 'main.ts'), PROGRAM);
  await writeFile(join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG));
  await ok('tsc', run(process.execPath, [TSC, '-p', app]));
  const out = await ok('the program', run(process.execPath, [join(app, 'out', 'main.js'), dir], { cwd: app }));
  assert.match(out.stdout, /runs 0:4194304:false 4194304:1048576:true 5242880:28311552:false/);
  assert.match(out.stdout, /progress 33554432/);
  assert.match(out.stdout, /aborted ABORTED/);

  const version = await ok('qed --version', run(join(app, 'node_modules', '.bin', 'qed'), ['--version'], { cwd: app }));
  assert.equal(version.stdout, `${(JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}\n`);
  const bin = await ok('qed info', run(join(app, 'node_modules', '.bin', 'qed'), ['info', '--output=json', join(dir, 'a.qed')], { cwd: app }));
  assert.equal((JSON.parse(bin.stdout) as { 'virtual-size': number })['virtual-size'], 32 * 1024 * 1024);
  const cjs = await ok('require from CommonJS', run(process.execPath, ['-e', "const q = require('qed-image'); console.log(typeof q.openImage, typeof q.createReadStream)"], { cwd: app }));
  assert.equal(cjs.stdout.trim(), 'function function');
});

test('without a compiler the package still installs, and reads and read-only opens work', async (t) => {
  const dir = await scratchDir(t);
  const tarball = await packInto(dir);
  const app = join(dir, 'no-compiler');
  const install = await project(app, tarball, { CC: '/bin/false', CXX: '/bin/false' });
  assert.match(install.stdout + install.stderr, /the native addon did not build/);
  const img = join(dir, 'x.qed');
  await ok('qed create', run(join(app, 'node_modules', '.bin', 'qed'), ['--no-lock', 'create', '-f', 'qed', img, '1M'], { cwd: app }));
  const info = await ok('qed info', run(join(app, 'node_modules', '.bin', 'qed'), ['info', img], { cwd: app }));
  assert.match(info.stdout, /virtual size: 1 MiB/);
  const locked = await run(join(app, 'node_modules', '.bin', 'qed'), ['io', '-c', 'write 0 512', img], { cwd: app });
  assert.equal(locked.code, 1);
  assert.match(locked.stderr, /not supported: image locking needs the native addon/);
});
