// The first part of a multipart/related answer (WADO-RS retrieves of one instance).
/** The body of the first part of a multipart/related message. */
export function firstPart(body: Uint8Array, contentType: string): ArrayBuffer {
  const match = /boundary="?([^";]+)"?/i.exec(contentType);
  if (!match) throw new Error(`not a multipart answer: ${contentType}`);
  const encoder = new TextEncoder();
  const delimiter = encoder.encode(`--${match[1]}`);
  const start = indexOf(body, delimiter, 0);
  if (start < 0) throw new Error("multipart: no boundary");
  const headersEnd = indexOf(body, encoder.encode("\r\n\r\n"), start);
  if (headersEnd < 0) throw new Error("multipart: no part headers");
  const from = headersEnd + 4;
  const end = indexOf(body, encoder.encode(`\r\n--${match[1]}`), from);
  if (end < 0) throw new Error("multipart: unterminated part");
  return body.slice(from, end).buffer;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  const last = haystack.length - needle.length;
  outer: for (let i = haystack.indexOf(first, from); i !== -1 && i <= last; i = haystack.indexOf(first, i + 1)) {
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
