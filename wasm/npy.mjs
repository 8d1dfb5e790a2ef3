// NumPy .npy files in JS: the CLI writes float32 arrays, the node tests read
// the oracle fixtures. Little-endian, C order; dtypes <f4, <f8, <i4, <i8.

const DTYPES = { '<f4': Float32Array, '<f8': Float64Array, '<i4': Int32Array, '<i8': BigInt64Array };

export function parseNpy(bytes) {
  // A plain Uint8Array even for a node Buffer, whose slice() would not copy.
  const data = bytes instanceof Uint8Array ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
  const magic = String.fromCharCode(...data.subarray(1, 6));
  if (data[0] !== 0x93 || magic !== 'NUMPY') throw new Error('not a .npy file');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const major = data[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const offset = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(data.subarray(offset, offset + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] || '').split(',').filter((s) => s.trim()).map(Number);
  if (/'fortran_order':\s*True/.test(header)) throw new Error('Fortran-ordered .npy is not supported');
  const Type = DTYPES[descr];
  if (!Type) throw new Error(`unsupported .npy dtype ${descr}`);
  const count = shape.reduce((a, b) => a * b, 1);
  const start = offset + headerLength;
  const copy = data.slice(start, start + count * Type.BYTES_PER_ELEMENT);
  const values = new Type(copy.buffer, 0, count);
  return { shape, data: Type === BigInt64Array ? Float64Array.from(values, Number) : values };
}

export function encodeNpy(values, shape) {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + values.length * 4);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(Float32Array.from(values).buffer), 10 + header.length);
  return out;
}
