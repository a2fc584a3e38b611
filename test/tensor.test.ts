import * as assert from 'assert'
import { backend, createModel, setNumThreads, tensor, Tensor, zeros } from '../lib'
import { rejects } from './helpers'

describe('tensor()', () => {
  it('wraps a Float32Array without copying', async () => {
    const data = new Float32Array([1, 2, 3, 4, 5, 6])
    const t = tensor(data, [2, 3])
    assert.strictEqual(t.dtype, 'float32')
    assert.deepStrictEqual(t.shape, [2, 3])
    assert.strictEqual(t.device, 'cpu')
    assert.strictEqual(t.size, 6)
    assert.strictEqual(t.dataSync(), data, 'dataSync returns the same memory')
    assert.strictEqual(await t.data(), data)
  })

  it('infers dtype from the array type and maps every dtype to its TypedArray', () => {
    assert.strictEqual(tensor(new Int32Array(2), [2]).dtype, 'int32')
    assert.strictEqual(tensor(new BigInt64Array(2), [2]).dtype, 'int64')
    assert.strictEqual(tensor(new Uint8Array(2), [2]).dtype, 'uint8')
    assert.strictEqual(tensor(new Uint8Array(2), [2], 'bool').dtype, 'bool')
    assert.strictEqual(tensor(new Uint16Array(2), [1, 2], 'float16').dtype, 'float16')
    assert.strictEqual(tensor(new Uint16Array(2), [2], 'bfloat16').dtype, 'bfloat16')
  })

  it('rejects a length that does not match the shape with a RangeError', () => {
    assert.throws(() => tensor(new Float32Array(5), [2, 3]), { name: 'RangeError', message: /length 6 for shape \[2, 3\] but received length 5/ })
  })

  it('rejects an array type that does not match the dtype with a TypeError', () => {
    assert.throws(() => tensor(new Float32Array(2), [2], 'int32' as never), { name: 'TypeError', message: /Int32Array for dtype 'int32'/ })
    assert.throws(() => tensor(new Uint16Array(2), [2] as never), { name: 'TypeError', message: /float16' or 'bfloat16'/ })
    assert.throws(() => tensor([1, 2] as never, [2]), TypeError)
    assert.throws(() => tensor(new Float32Array(2), [2, -1] as never), TypeError)
    assert.throws(() => tensor(new Float64Array(2) as never, [2]), TypeError)
  })

  it('copies with to("cpu") and refuses CUDA clearly where there is none', async () => {
    const data = new Float32Array([1, 2, 3])
    const t = tensor(data, [3])
    const c = await t.to('cpu')
    assert.notStrictEqual(c.dataSync(), data)
    assert.deepStrictEqual(Array.from(c.dataSync()), [1, 2, 3])
    data[0] = 9
    assert.strictEqual(c.dataSync()[0], 1, 'the copy owns its memory')
    if (!backend().cuda) await rejects(t.to('cuda'), Error, /CUDA is not available/)
    await assert.rejects(t.to('gpu' as never), RangeError)
  })

  it('disposes: dispose() and Symbol.dispose make it unusable', async () => {
    const t = tensor(new Float32Array(4), [4])
    t[Symbol.dispose]()
    assert.ok(t.disposed)
    assert.throws(() => t.dataSync(), /disposed/)
    t.dispose() // twice is fine
  })

  it('returns native results as external buffers that dispose frees', async () => {
    const model = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 2, inChannels: 1, outputStride: 32 })
    const out = await model.forward(zeros([1, 1, 32, 32], 'float32'))
    assert.ok(out instanceof Tensor)
    const data = out.dataSync()
    assert.strictEqual(data.length, 2 * 32 * 32)
    out.dispose()
    assert.strictEqual(data.byteLength, 0, 'the ArrayBuffer was detached and its tensor released')
    model.dispose()
  })
})

describe('backend()', () => {
  it('reports libtorch, CUDA, oneDNN, threads and bf16', () => {
    const b = backend()
    assert.match(b.libtorch, /^\d+\.\d+/)
    assert.strictEqual(typeof b.cuda, 'boolean')
    assert.strictEqual(typeof b.cudaDevices, 'number')
    assert.strictEqual(typeof b.mkldnn, 'boolean')
    assert.strictEqual(typeof b.bf16, 'boolean')
    assert.ok(b.architectures.includes('fcn'))
  })

  it('reports the CPU kind and the BLAS libtorch uses (the one loaded in this process)', () => {
    const fs = require('fs')
    const b = backend()
    assert.ok(['AMX', 'AVX512-BF16', 'AVX512', 'AVX2', 'other'].includes(b.cpu.isa), b.cpu.isa)
    const flags = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m) ?? ['', ''])[1].split(/\s+/)
    if (flags.includes('amx_bf16')) assert.strictEqual(b.cpu.isa, 'AMX')
    else if (flags.includes('avx512_bf16')) assert.strictEqual(b.cpu.isa, 'AVX512-BF16')
    else if (flags.includes('avx2') && !flags.includes('avx512f')) assert.strictEqual(b.cpu.isa, 'AVX2')
    assert.strictEqual(b.bf16, b.cpu.isa === 'AMX' || b.cpu.isa === 'AVX512-BF16')
    const vendor = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^vendor_id\s*:\s*(.*)$/m) ?? ['', ''])[1].trim()
    assert.strictEqual(b.cpu.vendor, vendor)
    // The BLAS is the shared object mapped into this process (or MKL inside libtorch).
    const maps: string = fs.readFileSync('/proc/self/maps', 'utf8')
    if (b.blas.name === 'mkl' || b.blas.name === 'none') {
      assert.strictEqual(b.blas.path, '')
    } else {
      assert.ok(maps.includes(b.blas.path), `${b.blas.path} is mapped`)
      if (b.blas.name === 'openblas') assert.match(b.blas.path, /openblas/)
      if (b.blas.name === 'reference') assert.match(b.blas.path, /\/blas\//)
    }
  })

  it('defaults to one thread per available core and validates setNumThreads', () => {
    const os = require('os')
    const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
    assert.strictEqual(backend().threads, cores)
    setNumThreads(1)
    assert.strictEqual(backend().threads, 1)
    setNumThreads(cores)
    assert.throws(() => setNumThreads(0), RangeError)
    assert.throws(() => setNumThreads('2' as never), TypeError)
  })
})
