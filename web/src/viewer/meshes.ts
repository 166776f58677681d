// Surface meshes of segmentation labels (binary STL in LPS mm from the viewer API) as actors
// of the 3D viewports.
import vtkActor from "@kitware/vtk.js/Rendering/Core/Actor";
import vtkMapper from "@kitware/vtk.js/Rendering/Core/Mapper";
import vtkSTLReader from "@kitware/vtk.js/IO/Geometry/STLReader";

export interface MeshActor {
  uid: string;
  actor: ReturnType<typeof vtkActor.newInstance>;
  points: number;
}

export async function loadMesh(url: string, uid: string, color: [number, number, number]): Promise<MeshActor> {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`mesh: HTTP ${response.status}`);
  const reader = vtkSTLReader.newInstance();
  reader.parseAsArrayBuffer(await response.arrayBuffer());
  const polydata = reader.getOutputData();
  const mapper = vtkMapper.newInstance();
  mapper.setInputData(polydata);
  // STL has no scalars worth colouring by: the actor's colour applies
  mapper.setScalarVisibility(false);
  const actor = vtkActor.newInstance();
  actor.setMapper(mapper);
  actor.getProperty().setColor(color[0] / 255, color[1] / 255, color[2] / 255);
  return { uid, actor, points: polydata.getNumberOfPoints() };
}
