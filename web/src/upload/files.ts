// Files from a drop (files and whole folders) or from a file input.

/** A file picked by the user, with its path inside a dropped folder. */
export interface Picked {
  file: File;
  path: string;
}

interface Entry {
  isFile: boolean;
  isDirectory: boolean;
  name: string;
  fullPath: string;
}
interface FileEntry extends Entry {
  file(ok: (file: File) => void, fail: (error: unknown) => void): void;
}
interface DirectoryEntry extends Entry {
  createReader(): { readEntries(ok: (entries: Entry[]) => void, fail: (error: unknown) => void): void };
}

async function readDirectory(dir: DirectoryEntry): Promise<Entry[]> {
  const reader = dir.createReader();
  const all: Entry[] = [];
  // readEntries answers in chunks (100 in Chromium) until it answers an empty list
  for (;;) {
    const chunk = await new Promise<Entry[]>((ok, fail) => reader.readEntries(ok, fail));
    if (chunk.length === 0) return all;
    all.push(...chunk);
  }
}

async function walk(entry: Entry, out: Picked[]): Promise<void> {
  if (entry.isFile) {
    const file = await new Promise<File>((ok, fail) => (entry as FileEntry).file(ok, fail));
    out.push({ file, path: entry.fullPath.replace(/^\//, "") || file.name });
  } else if (entry.isDirectory) {
    for (const child of await readDirectory(entry as DirectoryEntry)) await walk(child, out);
  }
}

/**
 * The files of a drop, folders read recursively. The entries are taken from the event at once
 * (a DataTransfer is emptied when its event handler returns); files without an entry (as from
 * a script) are taken as they are.
 */
export function filesOfDrop(data: DataTransfer): Promise<Picked[]> {
  const entries: Entry[] = [];
  const loose: File[] = [];
  const items = Array.from(data.items ?? []);
  if (items.length) {
    for (const item of items) {
      if (item.kind !== "file") continue;
      const entry = (item as DataTransferItem & { webkitGetAsEntry?: () => Entry | null }).webkitGetAsEntry?.();
      if (entry) entries.push(entry);
      else {
        const file = item.getAsFile();
        if (file) loose.push(file);
      }
    }
  } else {
    loose.push(...Array.from(data.files ?? []));
  }
  return (async () => {
    const out: Picked[] = loose.map((file) => ({ file, path: file.webkitRelativePath || file.name }));
    for (const entry of entries) await walk(entry, out);
    return out;
  })();
}

export function filesOfInput(input: HTMLInputElement): Picked[] {
  return Array.from(input.files ?? []).map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}
