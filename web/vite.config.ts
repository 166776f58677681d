import { defineConfig } from "vite";

// The bundle is served by `carina serve` from web/dist (SPA: unknown paths get index.html).
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 8000,
    assetsInlineLimit: 0,
  },
  worker: { format: "es" },
  optimizeDeps: {
    exclude: ["@cornerstonejs/dicom-image-loader"],
    include: ["dicom-parser"],
  },
});
