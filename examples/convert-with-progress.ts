// Convert an image with a progress line, giving up after a time limit (AbortSignal).
// Run: node dist/examples/convert-with-progress.js [DIR]
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { AbortError, convert, createImage, openImage } from 'qed-image';

const dir = process.argv[2] ?? tmpdir();
const source = join(dir, 'source.qed');
await createImage(source, { size: 256 * 1024 ** 2 });
{
  await using disk = await openImage(source);
  for (let mib = 0; mib < 256; mib += 16) await disk.write(Buffer.alloc(1024 ** 2, mib), mib * 1024 ** 2);
}

try {
  await convert(source, join(dir, 'copy.raw'), {
    targetFormat: 'raw',
    signal: AbortSignal.timeout(60_000),
    onProgress: (done, total) => process.stdout.write(`\r${((100 * done) / total).toFixed(0)}%`),
  });
  console.log('\nconverted');
} catch (err) {
  if (err instanceof AbortError) console.log('\ngave up: took too long');
  else throw err;
}
