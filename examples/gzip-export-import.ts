// Back an image up as a compressed raw stream, and restore it as a new QED image. Holes are
// not written back: the restored image is as sparse as the data allows.
// Run: node dist/examples/gzip-export-import.js [DIR]
import { createReadStream as fileIn, createWriteStream as fileOut } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { compare, createImage, createReadStream, openImage, writeImageFromStream } from 'qed-image';

const dir = process.argv[2] ?? tmpdir();
const original = join(dir, 'original.qed');
await createImage(original, { size: 64 * 1024 ** 2 });
{
  await using disk = await openImage(original);
  await disk.write(Buffer.alloc(3 * 1024 ** 2, 0x5a), 10 * 1024 ** 2);
}

{
  await using disk = await openImage(original, { readOnly: true });
  await pipeline(createReadStream(disk), createGzip(), fileOut(join(dir, 'backup.raw.gz')));
}
const restored = await writeImageFromStream(fileIn(join(dir, 'backup.raw.gz')).pipe(createGunzip()), join(dir, 'restored.qed'));
console.log(`restored ${restored.size} bytes as ${restored.format}`);
console.log((await compare(original, restored.path)).identical ? 'identical' : 'different');
