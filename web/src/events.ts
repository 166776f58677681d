// Document events one part of the app raises for another.

/** Dispatched on `document` after a segmentation version is saved (detail: segmentation and
 * version ids): a save can change the state of the task the segmentation belongs to. */
export const VERSION_SAVED = "carina:version-saved";
