// The label-map operations of the editing tools. Run with `npm run test:unit`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { components, floodFill, interpolateMasks, interpolationGaps, islandsToRemove, polygonMask, squaredDistance } from "./ops";

const count = (a: ArrayLike<number>) => Array.from(a).filter(Boolean).length;

test("polygon mask: the pixels whose centres are inside", () => {
  // the square [2, 6) x [1, 4): columns 2..5, rows 1..3
  const mask = polygonMask(8, 10, [
    [2, 1],
    [6, 1],
    [6, 4],
    [2, 4],
  ]);
  assert.equal(count(mask), 4 * 3);
  for (let r = 1; r <= 3; r++) for (let c = 2; c <= 5; c++) assert.equal(mask[r * 10 + c], 1);
  // a triangle: the pixel centres inside it, checked one by one
  const tri: [number, number][] = [
    [0.5, 0.5],
    [9.5, 0.5],
    [0.5, 7.5],
  ];
  const t = polygonMask(8, 10, tri);
  for (let r = 0; r < 8; r++) {
    for (let c = 0; c < 10; c++) {
      const x = c + 0.5;
      const y = r + 0.5;
      const inside = x >= 0.5 && y >= 0.5 && (x - 0.5) / 9 + (y - 0.5) / 7 < 1;
      assert.equal(t[r * 10 + c], inside ? 1 : 0, `pixel ${r},${c}`);
    }
  }
  assert.equal(count(polygonMask(4, 4, [[1, 1], [3, 3]])), 0);
});

test("flood fill: 4-connected on the slice, 6-connected in 3D", () => {
  // 2 slices of 3x3; value 1 on a diagonal (not 4-connected) and under the seed on slice 1
  const v = [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
  const inside = (i: number) => v[i] === 1;
  assert.deepEqual(floodFill([2, 3, 3], 0, inside, false), [0]);
  assert.deepEqual(floodFill([2, 3, 3], 0, inside, true).sort((a, b) => a - b), [0, 9, 10]);
  assert.deepEqual(floodFill([2, 3, 3], 1, inside, false), []);
});

test("components: 26- against 6-connectivity, islands removed", () => {
  const v = new Uint8Array(27);
  v[0] = 1; // corner (0,0,0)
  v[13] = 1; // centre: touches the corner only diagonally
  v[14] = 1; // face neighbour of the centre
  v[26] = 2;
  assert.deepEqual(components(v.map((x) => (x === 1 ? 1 : 0)), [3, 3, 3], 26).sizes, [0, 3]);
  assert.deepEqual(components(v.map((x) => (x === 1 ? 1 : 0)), [3, 3, 3], 6).sizes, [0, 1, 2]);
  assert.deepEqual(islandsToRemove(v, [3, 3, 3], 1, 6, null), [0]);
  assert.deepEqual(islandsToRemove(v, [3, 3, 3], 1, 26, null), []);
  assert.deepEqual(islandsToRemove(v, [3, 3, 3], 1, 6, 2), [0]);
  assert.deepEqual(islandsToRemove(v, [3, 3, 3], 1, 6, 3), [0, 13, 14]);
});

test("squared distance transform against brute force", () => {
  const rows = 9;
  const columns = 11;
  const mask = new Uint8Array(rows * columns);
  for (const i of [3, 40, 41, 97]) mask[i] = 1;
  const d = squaredDistance(mask, rows, columns);
  for (let i = 0; i < mask.length; i++) {
    let best = Infinity;
    for (let j = 0; j < mask.length; j++) {
      if (!mask[j]) continue;
      const dr = Math.floor(i / columns) - Math.floor(j / columns);
      const dc = (i % columns) - (j % columns);
      best = Math.min(best, dr * dr + dc * dc);
    }
    assert.equal(d[i], best, `pixel ${i}`);
  }
});

test("shape-based interpolation: a disc growing between two key slices", () => {
  const n = 41;
  const disc = (radius: number) => {
    const m = new Uint8Array(n * n);
    for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) if ((r - 20) ** 2 + (c - 20) ** 2 <= radius * radius) m[r * n + c] = 1;
    return m;
  };
  const [a, b] = [disc(4), disc(16)];
  const between = interpolateMasks(a, b, n, n, 3);
  assert.equal(between.length, 3);
  const sizes = between.map(count);
  assert.ok(count(a) < sizes[0] && sizes[0] < sizes[1] && sizes[1] < sizes[2] && sizes[2] < count(b), String(sizes));
  // the middle slice is about the disc of the mean radius
  const middle = count(disc(10));
  assert.ok(Math.abs(sizes[1] - middle) < 0.1 * middle, `${sizes[1]} vs ${middle}`);
  for (const m of between) for (let i = 0; i < m.length; i++) if (m[i]) assert.equal(b[i], 1);
  // identical key slices give the same mask between
  assert.deepEqual(interpolateMasks(a, a, n, n, 1)[0], a);
});

test("interpolation gaps", () => {
  const v = new Uint8Array(6 * 4);
  v[0] = 2;
  v[3 * 4 + 1] = 2;
  v[4 * 4] = 2;
  v[5 * 4] = 1;
  assert.deepEqual(interpolationGaps(v, [6, 2, 2], 2), [[0, 3]]);
  assert.deepEqual(interpolationGaps(v, [6, 2, 2], 1), []);
});
