// Small integer helpers for geometry and request validation. Sizes are JS numbers: exact to
// 2^53, beyond any QED capacity (at most 2^51 bytes at 64 MiB clusters and 16-cluster tables).

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

export function alignDown(n: number, alignment: number): number {
  return n - (n % alignment);
}

export function alignUp(n: number, alignment: number): number {
  const r = n % alignment;
  return r === 0 ? n : n + alignment - r;
}

export function isAligned(n: number, alignment: number): boolean {
  return n % alignment === 0;
}
