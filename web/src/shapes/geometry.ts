// Points of a shape between Cornerstone's annotations and the server's conventions. Both are in
// patient coordinates (LPS, mm); only the order differs:
// - box: Cornerstone keeps the corners as top-left, top-right, bottom-left, bottom-right; the
//   server a closed outline (top-left, top-right, bottom-right, bottom-left);
// - ellipse: Cornerstone keeps the end points of the axis along the columns (the upper one first),
//   then those of the axis along the rows (the left one first); the server the major axis' end
//   points, then the minor axis';
// - polygon: Cornerstone's freehand contour is its polyline.
export type Point = [number, number, number];

interface AnnotationLike {
  data: unknown;
}

const distance = (a: Point, b: Point) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
const dot = (a: Point, b: Point) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const minus = (a: Point, b: Point): Point => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const copy = (p: ArrayLike<number>): Point => [Number(p[0]), Number(p[1]), Number(p[2])];

/** The server's points of a Cornerstone annotation of a shape tool. */
export function fromCornerstone(kind: string, item: AnnotationLike): Point[] {
  const data = item.data as { handles?: { points?: ArrayLike<number>[] }; contour?: { polyline?: ArrayLike<number>[] } };
  if (kind === "polygon") return (data.contour?.polyline ?? []).map(copy);
  const points = (data.handles?.points ?? []).map(copy);
  if (kind === "box" && points.length === 4) return [points[0], points[1], points[3], points[2]];
  if (kind === "ellipse" && points.length === 4) {
    return distance(points[0], points[1]) >= distance(points[2], points[3]) ? points : [points[2], points[3], points[0], points[1]];
  }
  return points;
}

/**
 * Cornerstone's handle points of a stored shape on an image whose rows run along `rowCosines`
 * and columns along `columnCosines` (ImageOrientationPatient).
 */
export function toCornerstone(kind: string, points: Point[], rowCosines: Point, columnCosines: Point): Point[] {
  if (kind === "box" && points.length === 4) return [points[0], points[1], points[3], points[2]];
  if (kind === "ellipse" && points.length === 4) {
    const [a, b, c, d] = points;
    // the pair more along the columns is the vertical axis
    const vertical = Math.abs(dot(minus(b, a), columnCosines)) >= Math.abs(dot(minus(d, c), columnCosines));
    const [v1, v2, h1, h2] = vertical ? [a, b, c, d] : [c, d, a, b];
    const [upper, lower] = dot(v1, columnCosines) <= dot(v2, columnCosines) ? [v1, v2] : [v2, v1];
    const [left, right] = dot(h1, rowCosines) <= dot(h2, rowCosines) ? [h1, h2] : [h2, h1];
    return [upper, lower, left, right];
  }
  return points.map(copy);
}
