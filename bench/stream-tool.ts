// The stream contender of stream-bench.ts, as a whole process a user would write:
//   node dist/bench/stream-tool.js export IMAGE OUT   (image → raw bytes, through createReadStream)
//   node dist/bench/stream-tool.js import RAW OUT.qed  (raw bytes → new QED image, through writeImageFromStream)
import { createReadStream as fileIn, createWriteStream as fileOut, statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createReadStream, openImage, writeImageFromStream } from '../src/index.js';

const [mode, from, to] = process.argv.slice(2);
if (mode === 'export' && from && to) {
  await using image = await openImage(from, { readOnly: true });
  await pipeline(createReadStream(image), fileOut(to));
} else if (mode === 'import' && from && to) {
  await writeImageFromStream(fileIn(from, { highWaterMark: 4 * 1024 * 1024 }), to, { size: statSync(from).size });
} else {
  console.error('usage: stream-tool.js export IMAGE OUT | import RAW OUT');
  process.exitCode = 1;
}
