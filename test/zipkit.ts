/**
 * Test tools for hostile files: a small zip reader/writer (stored or deflated records, correct
 * CRC-32s) and a pickle emitter, so that tests can build files that are corrupt in exactly one way
 * while every checksum is right.
 */
import * as zlib from 'zlib'

export interface ZipRecord { name: string, data: Buffer, deflate?: boolean, declaredSize?: number }

/** Where each record's stored bytes lie, from the central directory. Trusts its input. */
export interface ZipEntry { name: string, method: number, start: number, end: number }
export function zipEntries (buf: Buffer): ZipEntry[] {
  let eocd = buf.length - 22
  while (eocd >= 0 && buf.readUInt32LE(eocd) !== 0x06054b50) eocd--
  if (eocd < 0) throw new Error('no end of central directory')
  const n = buf.readUInt16LE(eocd + 10)
  let p = buf.readUInt32LE(eocd + 16)
  const out: ZipEntry[] = []
  for (let i = 0; i < n; i++) {
    const nlen = buf.readUInt16LE(p + 28)
    const lho = buf.readUInt32LE(p + 42)
    const start = lho + 30 + buf.readUInt16LE(lho + 26) + buf.readUInt16LE(lho + 28)
    out.push({ name: buf.toString('utf8', p + 46, p + 46 + nlen), method: buf.readUInt16LE(p + 10), start, end: start + buf.readUInt32LE(p + 20) })
    p += 46 + nlen + buf.readUInt16LE(p + 30) + buf.readUInt16LE(p + 32)
  }
  return out
}

/** Reads a zip's records (stored or deflated). Trusts its input. */
export function readZip (buf: Buffer): ZipRecord[] {
  return zipEntries(buf).map((e) => {
    const raw = buf.subarray(e.start, e.end)
    return { name: e.name, data: e.method === 8 ? zlib.inflateRawSync(raw) : Buffer.from(raw), deflate: e.method === 8 }
  })
}

/** Writes records as a zip with correct CRCs (deflated where asked; declaredSize overrides the size). */
export function writeZip (records: ZipRecord[]): Buffer {
  const parts: Buffer[] = []
  const central: Buffer[] = []
  let offset = 0
  for (const r of records) {
    const name = Buffer.from(r.name, 'utf8')
    const body = r.deflate ? zlib.deflateRawSync(r.data) : r.data
    const crc = zlib.crc32(r.data)
    const usize = r.declaredSize ?? r.data.length
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(20, 4)
    local.writeUInt16LE(r.deflate ? 8 : 0, 8)
    local.writeUInt32LE(crc, 14)
    local.writeUInt32LE(body.length, 18)
    local.writeUInt32LE(usize, 22)
    local.writeUInt16LE(name.length, 26)
    const c = Buffer.alloc(46)
    c.writeUInt32LE(0x02014b50, 0)
    c.writeUInt16LE(20, 4)
    c.writeUInt16LE(20, 6)
    c.writeUInt16LE(r.deflate ? 8 : 0, 10)
    c.writeUInt32LE(crc, 16)
    c.writeUInt32LE(body.length, 20)
    c.writeUInt32LE(usize, 24)
    c.writeUInt16LE(name.length, 28)
    c.writeUInt32LE(offset, 42)
    parts.push(local, name, body)
    central.push(c, name)
    offset += 30 + name.length + body.length
  }
  const cd = Buffer.concat(central)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(records.length, 8)
  end.writeUInt16LE(records.length, 10)
  end.writeUInt32LE(cd.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...parts, cd, end])
}

/** Replaces (or adds) one record of a zip, keeping every CRC right. */
export function replaceRecord (zip: Buffer, suffix: string, data: Buffer): Buffer {
  const records = readZip(zip)
  const r = records.find((x) => x.name.endsWith(suffix))
  if (r) r.data = data
  else records.push({ name: records[0].name.split('/')[0] + '/' + suffix, data })
  return writeZip(records)
}

export function record (zip: Buffer, suffix: string): Buffer {
  const r = readZip(zip).find((x) => x.name.endsWith(suffix))
  if (!r) throw new Error(`no record ${suffix}`)
  return r.data
}

/** A pickle (protocol 2) emitter with just the opcodes torch.save uses. */
export class Pickle {
  private readonly out: number[] = [0x80, 2]
  op (...bytes: number[]): this { this.out.push(...bytes); return this }
  mark (): this { return this.op(0x28) }
  global (module: string, name: string): this { return this.op(0x63, ...Buffer.from(`${module}\n${name}\n`)) }
  str (s: string): this {
    const b = Buffer.from(s, 'utf8')
    const n = Buffer.alloc(4)
    n.writeUInt32LE(b.length)
    return this.op(0x58, ...n, ...b)
  }
  int (v: number): this {
    const b = Buffer.alloc(4)
    b.writeInt32LE(v)
    return this.op(0x4a, ...b)
  }
  long (v: bigint): this {
    const b = Buffer.alloc(8)
    b.writeBigInt64LE(v)
    return this.op(0x8a, 8, ...b)
  }
  ints (values: Array<number | bigint>): this {
    this.mark()
    for (const v of values) typeof v === 'bigint' ? this.long(v) : this.int(v)
    return this.op(0x74)
  }
  bool (v: boolean): this { return this.op(v ? 0x88 : 0x89) }
  /** key -> _rebuild_tensor_v2(storage(key, numel), offset, size, stride, False, OrderedDict()) */
  tensor (storageKey: string, numel: number | bigint, offset: number, size: Array<number | bigint>, stride: Array<number | bigint>, type = 'FloatStorage'): this {
    this.global('torch._utils', '_rebuild_tensor_v2').mark()
    this.mark().str('storage').global('torch', type).str(storageKey).str('cpu')
    typeof numel === 'bigint' ? this.long(numel) : this.int(numel)
    this.op(0x74, 0x51) // TUPLE, BINPERSID
    this.int(offset).ints(size).ints(stride).bool(false).global('collections', 'OrderedDict').op(0x29, 0x52) // EMPTY_TUPLE REDUCE
    return this.op(0x74, 0x52) // TUPLE REDUCE
  }
  /** OrderedDict() MARK ... SETITEMS STOP, with `body` emitting key/value pairs. */
  static dict (body: (p: Pickle) => void): Buffer {
    const p = new Pickle()
    p.global('collections', 'OrderedDict').op(0x29, 0x52).mark()
    body(p)
    p.op(0x75, 0x2e)
    return p.bytes()
  }
  bytes (): Buffer { return Buffer.from(this.out) }
}

/** A state dict zip (torch.save layout) from a pickle and its storages. */
export function stateDictZip (pickle: Buffer, storages: Record<string, Buffer>, top = 'archive'): Buffer {
  return writeZip([
    { name: `${top}/data.pkl`, data: pickle },
    ...Object.entries(storages).map(([k, data]) => ({ name: `${top}/data/${k}`, data })),
    { name: `${top}/version`, data: Buffer.from('3\n') }
  ])
}
