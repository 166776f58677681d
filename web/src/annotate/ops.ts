// Label-map operations of the editing tools that Cornerstone has no fitting tool for, on plain
// arrays: a label map is (slices, rows, columns) in C order, as on the wire. No Cornerstone here,
// so they are unit-tested in Node (ops.test.ts).

/** Shape of a label map: [slices, rows, columns]. */
export type Dims = [number, number, number];

/**
 * The pixels of a rows x columns plane whose centres lie inside a closed polygon (even-odd rule).
 * Points are image coordinates [x, y] where pixel (column c, row r) covers [c, c+1) x [r, r+1),
 * so its centre is (c + 0.5, r + 0.5) — Cornerstone's worldToImageCoords convention.
 */
export function polygonMask(rows: number, columns: number, points: [number, number][]): Uint8Array {
  const mask = new Uint8Array(rows * columns);
  const n = points.length;
  if (n < 3) return mask;
  let top = Infinity;
  let bottom = -Infinity;
  for (const [, y] of points) {
    top = Math.min(top, y);
    bottom = Math.max(bottom, y);
  }
  const first = Math.max(0, Math.floor(top - 0.5));
  const last = Math.min(rows - 1, Math.ceil(bottom));
  const crossings: number[] = [];
  for (let r = first; r <= last; r++) {
    const y = r + 0.5;
    crossings.length = 0;
    for (let i = 0; i < n; i++) {
      const [x0, y0] = points[i];
      const [x1, y1] = points[(i + 1) % n];
      // half-open in y, so a vertex on the scan line counts once
      if ((y0 <= y && y < y1) || (y1 <= y && y < y0)) crossings.push(x0 + ((y - y0) * (x1 - x0)) / (y1 - y0));
    }
    crossings.sort((a, b) => a - b);
    for (let i = 0; i + 1 < crossings.length; i += 2) {
      // centres c + 0.5 in [xa, xb)
      const from = Math.max(0, Math.ceil(crossings[i] - 0.5));
      const to = Math.min(columns - 1, Math.ceil(crossings[i + 1] - 0.5) - 1);
      for (let c = from; c <= to; c++) mask[r * columns + c] = 1;
    }
  }
  return mask;
}

/**
 * The connected region of voxels for which `inside(index)` holds that contains `seed` (a flat
 * index): 4-connected within the seed's slice, or 6-connected in 3D. Empty when the seed itself
 * is not inside. Returns the flat indices.
 */
export function floodFill(dims: Dims, seed: number, inside: (index: number) => boolean, threeD: boolean): number[] {
  const [slices, rows, columns] = dims;
  const plane = rows * columns;
  if (seed < 0 || seed >= slices * plane || !inside(seed)) return [];
  const seen = new Uint8Array(slices * plane);
  const out: number[] = [];
  const stack = [seed];
  seen[seed] = 1;
  while (stack.length) {
    const index = stack.pop() as number;
    out.push(index);
    const k = Math.floor(index / plane);
    const rest = index - k * plane;
    const r = Math.floor(rest / columns);
    const c = rest - r * columns;
    const visit = (next: number) => {
      if (!seen[next]) {
        seen[next] = 1;
        if (inside(next)) stack.push(next);
      }
    };
    if (c > 0) visit(index - 1);
    if (c < columns - 1) visit(index + 1);
    if (r > 0) visit(index - columns);
    if (r < rows - 1) visit(index + columns);
    if (threeD) {
      if (k > 0) visit(index - plane);
      if (k < slices - 1) visit(index + plane);
    }
  }
  return out;
}

/**
 * Connected components in 3D of the voxels where `mask` is non-zero, 6-connected (faces) or
 * 26-connected (faces, edges and corners). `labels` numbers them from 1 (0: not in the mask);
 * `sizes[n]` is component n's voxel count (sizes[0] is 0).
 */
export function components(mask: ArrayLike<number>, dims: Dims, connectivity: 6 | 26): { labels: Int32Array; sizes: number[] } {
  const [slices, rows, columns] = dims;
  const plane = rows * columns;
  const labels = new Int32Array(slices * plane);
  const sizes = [0];
  const offsets: [number, number, number][] = [];
  for (let dk = -1; dk <= 1; dk++) {
    for (let dr = -1; dr <= 1; dr++) {
      for (let dc = -1; dc <= 1; dc++) {
        const order = Math.abs(dk) + Math.abs(dr) + Math.abs(dc);
        if (order === 0 || (connectivity === 6 && order > 1)) continue;
        offsets.push([dk, dr, dc]);
      }
    }
  }
  const stack: number[] = [];
  for (let start = 0; start < labels.length; start++) {
    if (!mask[start] || labels[start]) continue;
    const label = sizes.length;
    let size = 0;
    labels[start] = label;
    stack.push(start);
    while (stack.length) {
      const index = stack.pop() as number;
      size++;
      const k = Math.floor(index / plane);
      const rest = index - k * plane;
      const r = Math.floor(rest / columns);
      const c = rest - r * columns;
      for (const [dk, dr, dc] of offsets) {
        const kk = k + dk;
        const rr = r + dr;
        const cc = c + dc;
        if (kk < 0 || kk >= slices || rr < 0 || rr >= rows || cc < 0 || cc >= columns) continue;
        const next = kk * plane + rr * columns + cc;
        if (mask[next] && !labels[next]) {
          labels[next] = label;
          stack.push(next);
        }
      }
    }
    sizes.push(size);
  }
  return { labels, sizes };
}

/**
 * The voxels of `value` to clear so that only its largest 3D component remains (`minSize` null),
 * or so that no component smaller than `minSize` voxels remains.
 */
export function islandsToRemove(values: ArrayLike<number>, dims: Dims, value: number, connectivity: 6 | 26, minSize: number | null): number[] {
  const mask = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) if (values[i] === value) mask[i] = 1;
  const { labels, sizes } = components(mask, dims, connectivity);
  const drop = new Uint8Array(sizes.length);
  if (minSize === null) {
    let largest = 0;
    for (let n = 1; n < sizes.length; n++) if (sizes[n] > sizes[largest]) largest = n;
    for (let n = 1; n < sizes.length; n++) drop[n] = n === largest ? 0 : 1;
  } else {
    for (let n = 1; n < sizes.length; n++) drop[n] = sizes[n] < minSize ? 1 : 0;
  }
  const out: number[] = [];
  for (let i = 0; i < labels.length; i++) if (labels[i] && drop[labels[i]]) out.push(i);
  return out;
}

// "infinitely far": large enough, and finite so that the lower envelope stays well defined
const FAR = 1e20;

/** Squared Euclidean distance transform of one line (Felzenszwalb & Huttenlocher's lower envelope). */
function edt1d(f: Float64Array, n: number, d: Float64Array, v: Int32Array, z: Float64Array): void {
  let k = 0;
  v[0] = 0;
  z[0] = -Infinity;
  z[1] = Infinity;
  for (let q = 1; q < n; q++) {
    let s = (f[q] + q * q - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k]);
    while (s <= z[k]) {
      k--;
      s = (f[q] + q * q - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k]);
    }
    k++;
    v[k] = q;
    z[k] = s;
    z[k + 1] = Infinity;
  }
  k = 0;
  for (let q = 0; q < n; q++) {
    while (z[k + 1] < q) k++;
    const dq = q - v[k];
    d[q] = dq * dq + f[v[k]];
  }
}

/** Squared distance (pixels) from every pixel of a rows x columns plane to the nearest set pixel. */
export function squaredDistance(mask: ArrayLike<number>, rows: number, columns: number): Float64Array {
  const out = new Float64Array(rows * columns);
  const size = Math.max(rows, columns);
  const f = new Float64Array(size);
  const d = new Float64Array(size);
  const v = new Int32Array(size);
  const z = new Float64Array(size + 1);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) f[c] = mask[r * columns + c] ? 0 : FAR;
    edt1d(f, columns, d, v, z);
    for (let c = 0; c < columns; c++) out[r * columns + c] = d[c];
  }
  for (let c = 0; c < columns; c++) {
    for (let r = 0; r < rows; r++) f[r] = out[r * columns + c];
    edt1d(f, rows, d, v, z);
    for (let r = 0; r < rows; r++) out[r * columns + c] = d[r];
  }
  return out;
}

/** Signed distance of a plane's mask: negative inside (to the nearest outside pixel), positive outside. */
export function signedDistance(mask: ArrayLike<number>, rows: number, columns: number): Float64Array {
  const outside = new Uint8Array(rows * columns);
  for (let i = 0; i < outside.length; i++) outside[i] = mask[i] ? 0 : 1;
  const toInside = squaredDistance(mask, rows, columns);
  const toOutside = squaredDistance(outside, rows, columns);
  const out = new Float64Array(rows * columns);
  for (let i = 0; i < out.length; i++) out[i] = mask[i] ? -Math.sqrt(toOutside[i]) : Math.sqrt(toInside[i]);
  return out;
}

/**
 * Shape-based interpolation between two key slices' masks (each rows x columns): the masks of the
 * `between` slices in order, from the linear blend of the two signed distance maps (inside where
 * the blend is negative). A slice between lies within the union of the two masks.
 */
export function interpolateMasks(a: ArrayLike<number>, b: ArrayLike<number>, rows: number, columns: number, between: number): Uint8Array[] {
  const da = signedDistance(a, rows, columns);
  const db = signedDistance(b, rows, columns);
  const out: Uint8Array[] = [];
  for (let step = 1; step <= between; step++) {
    const t = step / (between + 1);
    const mask = new Uint8Array(rows * columns);
    for (let i = 0; i < mask.length; i++) if ((1 - t) * da[i] + t * db[i] < 0) mask[i] = 1;
    out.push(mask);
  }
  return out;
}

/**
 * Runs of slices to interpolate for one label: every pair of consecutive slices holding `value`
 * with empty slices between them, as [k1, k2].
 */
export function interpolationGaps(values: ArrayLike<number>, dims: Dims, value: number): [number, number][] {
  const [slices, rows, columns] = dims;
  const plane = rows * columns;
  const holding: number[] = [];
  for (let k = 0; k < slices; k++) {
    for (let i = k * plane; i < (k + 1) * plane; i++) {
      if (values[i] === value) {
        holding.push(k);
        break;
      }
    }
  }
  const gaps: [number, number][] = [];
  for (let i = 0; i + 1 < holding.length; i++) if (holding[i + 1] - holding[i] > 1) gaps.push([holding[i], holding[i + 1]]);
  return gaps;
}
