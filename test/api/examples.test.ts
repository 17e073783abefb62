// The examples in examples/ run as a user would run them (importing 'qed-image' by name) and
// print what their comments promise.
import test from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { run, scratchDir } from '../support/qemu.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));

const expectations: Record<string, RegExp> = {
  'create-write-read.js': /read back: hello, qed[\s\S]*format: 'qed'/,
  'convert-with-progress.js': /100%\s*converted/,
  'gzip-export-import.js': /restored 67108864 bytes as qed\s+identical/,
  'block-status.js': /0\+65536: data in layer 1[\s\S]*536870912\+65536: data in layer 0/,
  'check-and-repair.js': /16\/2048 clusters allocated, exit code 0/,
  'serve-nbd.js': /serving: nbdinfo[\s\S]*stopped/,
};

for (const [example, expected] of Object.entries(expectations)) {
  test(`examples/${example.replace(/\.js$/, '.ts')} runs and prints what it promises`, async (t) => {
    const dir = await scratchDir(t);
    const result = await run(process.execPath, [`${EXAMPLES}${example}`, dir]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, expected);
  });
}
