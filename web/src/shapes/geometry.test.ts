// Point orders between Cornerstone's annotations and the server's shapes. Run with `npm run test:unit`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fromCornerstone, toCornerstone, type Point } from "./geometry";

// an axial CT image: rows along +x (patient left), columns along +y (posterior)
const ROW: Point = [1, 0, 0];
const COLUMN: Point = [0, 1, 0];
const annotation = (points: Point[]) => ({ data: { handles: { points } } });

test("a box's corners become a closed outline and back", () => {
  // Cornerstone: top-left, top-right, bottom-left, bottom-right
  const corners: Point[] = [[10, 20, 5], [40, 20, 5], [10, 50, 5], [40, 50, 5]];
  const outline = fromCornerstone("box", annotation(corners));
  assert.deepEqual(outline, [[10, 20, 5], [40, 20, 5], [40, 50, 5], [10, 50, 5]]);
  assert.deepEqual(toCornerstone("box", outline, ROW, COLUMN), corners);
});

test("an ellipse's major axis comes first, whichever way it was drawn", () => {
  // Cornerstone: upper, lower (the axis along the columns), left, right
  const wide: Point[] = [[0, -10, 0], [0, 10, 0], [-30, 0, 0], [30, 0, 0]];
  assert.deepEqual(fromCornerstone("ellipse", annotation(wide)), [[-30, 0, 0], [30, 0, 0], [0, -10, 0], [0, 10, 0]]);
  const tall: Point[] = [[0, -30, 0], [0, 30, 0], [-10, 0, 0], [10, 0, 0]];
  assert.deepEqual(fromCornerstone("ellipse", annotation(tall)), tall);
  // and back into Cornerstone's order, with the end points in any order
  assert.deepEqual(toCornerstone("ellipse", [[30, 0, 0], [-30, 0, 0], [0, 10, 0], [0, -10, 0]], ROW, COLUMN), wide);
  assert.deepEqual(toCornerstone("ellipse", [[0, 30, 0], [0, -30, 0], [10, 0, 0], [-10, 0, 0]], ROW, COLUMN), tall);
});

test("lines, angles and points keep their order; a polygon is the freehand polyline", () => {
  const angle: Point[] = [[1, 2, 3], [4, 5, 6], [7, 8, 9]];
  assert.deepEqual(fromCornerstone("angle", annotation(angle)), angle);
  assert.deepEqual(toCornerstone("angle", angle, ROW, COLUMN), angle);
  const polyline: Point[] = [[0, 0, 1], [5, 0, 1], [5, 5, 1]];
  assert.deepEqual(fromCornerstone("polygon", { data: { contour: { polyline } } }), polyline);
});
