// Where the data is: walk an image's allocation through its whole backing chain, as
// `qemu-img map` does, without reading any data.
// Run: node dist/examples/block-status.js [DIR]
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createImage, map, openImage } from 'qed-image';

const dir = process.argv[2] ?? tmpdir();
const base = join(dir, 'base.qed');
const overlay = join(dir, 'overlay.qed');
await createImage(base, { size: 1024 ** 3 });
await createImage(overlay, { backingFile: 'base.qed', backingFormat: 'qed' });
{
  await using disk = await openImage(base);
  await disk.write(Buffer.alloc(65536, 1), 0);
}
{
  await using disk = await openImage(overlay);
  await disk.write(Buffer.alloc(65536, 2), 512 * 1024 ** 2);
}

for await (const run of map(overlay)) {
  const where = run.data ? `data in layer ${run.depth}` : run.zero ? 'zeros' : 'nothing';
  console.log(`${run.start}+${run.length}: ${where}`);
}
