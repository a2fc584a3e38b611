/**
 * Our converter from the traced TorchScript graph (native/export: the network with BatchNorms
 * folded, eval mode, sizes rewritten as sizes of tensors where the network allows it) to ONNX
 * operators, written with onnx-proto (protobufjs and the ONNX schema). Covers the operators the
 * zoo uses; any other is a SegtorchError naming it.
 *
 * Integers computed from shapes (aten::size and the arithmetic on it) become int64 tensors of
 * shape [1]; lists of them are concatenated. Adaptive average pooling to b x b bins (PSPNet's and
 * ICNet's pyramid) has no ONNX operator for a size known only at run time: it is decomposed exactly
 * as PyTorch defines it (bin i of a length L covers [floor(i L / b), ceil((i + 1) L / b))), with
 * cumulative sums along H and W (CumSum), the sums of each bin gathered at its bounds and divided
 * by its length; 1 x 1 is GlobalAveragePool.
 */
import { onnx } from 'onnx-proto'
import { SegtorchError } from '../errors'
import { Tensor } from '../tensor'

/** The traced graph as the native exportGraph describes it. */
export interface GraphValue { type: string, sizes: number[], dtype: string }
export interface GraphNode { kind: string, inputs: number[], outputs: number[], value?: unknown, name?: string }
export interface TracedGraph { values: GraphValue[], nodes: GraphNode[], input: number, output: number }

export interface ConvertOptions {
  opset: number
  /** Symbolic batch, height and width in the ONNX input and output (false: the fixed sizes). */
  dynamicSize: boolean
  /** Fixed sizes [N, C, H, W] of the input when dynamicSize is false. */
  inputShape: [number, number, number, number]
  numClasses: number
  output: 'logits' | 'labels'
  /** metadata_props of the model */
  metadata: Record<string, string>
  producerVersion: string
}

const FLOAT = onnx.TensorProto.DataType.FLOAT
const INT64 = onnx.TensorProto.DataType.INT64
const INT32 = onnx.TensorProto.DataType.INT32
const A = onnx.AttributeProto.AttributeType

type Attr = number | number[] | string | { float: number }

/** What a graph value is on the ONNX side. */
type Converted =
  | { kind: 'tensor', name: string }             // an ONNX tensor (float or int64 [1] for dynamic ints)
  | { kind: 'const', value: unknown }            // a value known at conversion time (number, list, boolean, null, string)
  | { kind: 'list', items: Converted[] }         // a list built from graph values
  | { kind: 'weights', tensor: Tensor, name?: string }  // a tensor constant (an initializer once used)

class Converter {
  readonly nodes: onnx.INodeProto[] = []
  readonly initializers: onnx.ITensorProto[] = []
  #values = new Map<number, Converted>()
  #producer = new Map<number, GraphNode>()
  #counter = 0
  #initialized = new Map<unknown, string>()

  constructor (readonly graph: TracedGraph, readonly opset: number) {
    for (const n of graph.nodes) for (const o of n.outputs) this.#producer.set(o, n)
  }

  fresh (hint: string): string {
    return `${hint}_${this.#counter++}`
  }

  node (op: string, inputs: string[], attrs: Record<string, Attr> = {}, outputs = 1, hint = op.toLowerCase()): string[] {
    const names = Array.from({ length: outputs }, () => this.fresh(hint))
    const attribute: onnx.IAttributeProto[] = []
    for (const [name, v] of Object.entries(attrs)) {
      if (typeof v === 'number') attribute.push({ name, type: A.INT, i: v })
      else if (typeof v === 'string') attribute.push({ name, type: A.STRING, s: Buffer.from(v) })
      else if (Array.isArray(v)) attribute.push({ name, type: A.INTS, ints: v })
      else attribute.push({ name, type: A.FLOAT, f: v.float })
    }
    this.nodes.push({ opType: op, input: inputs, output: names, attribute, name: names[0] })
    return names
  }

  one (op: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    return this.node(op, inputs, attrs)[0]
  }

  /** An int64 initializer (1-D) holding `values`. */
  ints (values: number[], hint = 'ints'): string {
    const key = `i64:${values.join(',')}`
    const known = this.#initialized.get(key)
    if (known !== undefined) return known
    const name = this.fresh(hint)
    this.initializers.push({ name, dataType: INT64, dims: [values.length], rawData: new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer) })
    this.#initialized.set(key, name)
    return name
  }

  /** A float scalar initializer (0-D). */
  scalar (value: number): string {
    const key = `f32:${value}`
    const known = this.#initialized.get(key)
    if (known !== undefined) return known
    const name = this.fresh('scalar')
    this.initializers.push({ name, dataType: FLOAT, dims: [], rawData: new Uint8Array(new Float32Array([value]).buffer) })
    this.#initialized.set(key, name)
    return name
  }

  weights (t: Tensor, name?: string): string {
    const known = this.#initialized.get(t)
    if (known !== undefined) return known
    const data = t.dataSync() as ArrayBufferView
    let dataType: number
    let bytes: Uint8Array
    if (t.dtype === 'float32') {
      dataType = FLOAT
      bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice()
    } else if (t.dtype === 'int64') {
      dataType = INT64
      bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice()
    } else if (t.dtype === 'int32') {
      dataType = INT64
      bytes = new Uint8Array(new BigInt64Array(Array.from(data as Int32Array, (v) => BigInt(v))).buffer)
    } else {
      throw new SegtorchError(`ONNX export: a ${t.dtype} tensor constant is not supported`)
    }
    const unique = name === undefined ? this.fresh('const') : this.#uniqueName(name)
    this.initializers.push({ name: unique, dataType, dims: [...t.shape], rawData: bytes })
    this.#initialized.set(t, unique)
    return unique
  }

  #names = new Set<string>()
  #uniqueName (name: string): string {
    let n = name
    while (this.#names.has(n)) n = `${name}_${this.#counter++}`
    this.#names.add(n)
    return n
  }

  set (id: number, v: Converted): void {
    this.#values.set(id, v)
  }

  get (id: number): Converted {
    const v = this.#values.get(id)
    if (v === undefined) throw new SegtorchError(`ONNX export: graph value %${id} is used before it is defined`)
    return v
  }

  producer (id: number): GraphNode | undefined {
    return this.#producer.get(id)
  }

  /** A value known at conversion time (a constant or a list of constants), or undefined. */
  constant (id: number): unknown {
    return staticValue(this.get(id))
  }

  /** An ONNX tensor name for a value: tensors as they are, numbers as initializers. */
  tensor (id: number): string {
    return this.asTensor(this.get(id))
  }

  asTensor (v: Converted): string {
    if (v.kind === 'tensor') return v.name
    if (v.kind === 'weights') return this.weights(v.tensor, v.name)
    if (v.kind === 'const' && typeof v.value === 'number') return this.scalar(v.value)
    throw new SegtorchError('ONNX export: expected a tensor in the graph')
  }

  /** An int value or a list of ints as a 1-D int64 tensor. */
  intVector (v: Converted): string {
    const s = staticValue(v)
    if (typeof s === 'number') return this.ints([s])
    if (Array.isArray(s)) return this.ints(s as number[])
    if (v.kind === 'tensor') return v.name
    if (v.kind === 'list') {
      const parts = v.items.map((item) => this.intVector(item))
      return parts.length === 1 ? parts[0] : this.one('Concat', parts, { axis: 0 })
    }
    throw new SegtorchError('ONNX export: expected integers in the graph')
  }

  /** Item i of a list of ints, as a [1] int64 tensor. */
  listItem (v: Converted, i: number): Converted {
    if (v.kind === 'list') return v.items[i]
    const s = staticValue(v)
    if (Array.isArray(s)) return { kind: 'const', value: s[i] }
    throw new SegtorchError('ONNX export: expected a list of integers in the graph')
  }

  /** Sizes [N, C] of a tensor followed by `spatial` (a list value), as int64 [4]. */
  withBatchAndChannels (x: string, spatial: Converted): string {
    const nc = this.one('Slice', [this.one('Shape', [x]), this.ints([0]), this.ints([2]), this.ints([0])])
    return this.one('Concat', [nc, this.intVector(spatial)], { axis: 0 })
  }
}

function staticValue (v: Converted): unknown {
  if (v.kind === 'const') return v.value
  if (v.kind === 'list') {
    const items = v.items.map(staticValue)
    return items.every((i) => i !== undefined) ? items : undefined
  }
  return undefined
}

// Slice ends at or past the end: torch writes INT64_MAX; ONNX clamps any larger end.
const END = Number.MAX_SAFE_INTEGER

function num (c: Converter, id: number, what: string): number {
  const v = c.constant(id)
  if (typeof v !== 'number' && typeof v !== 'boolean') throw new SegtorchError(`ONNX export: expected a constant ${what} but it is computed in the graph`)
  return Number(v)
}

function numList (c: Converter, id: number, what: string): number[] {
  const v = c.constant(id)
  if (!Array.isArray(v)) throw new SegtorchError(`ONNX export: expected a constant list for ${what} but it is computed in the graph`)
  return v as number[]
}

/** A pair [h, w] from a list of one or two numbers. */
function pair (v: number[]): [number, number] {
  return v.length === 1 ? [v[0], v[0]] : [v[0], v[1]]
}

type Handler = (c: Converter, n: GraphNode) => void

function unary (op: string): Handler {
  return (c, n) => c.set(n.outputs[0], { kind: 'tensor', name: c.one(op, [c.tensor(n.inputs[0])]) })
}

function binary (op: 'Add' | 'Sub' | 'Mul' | 'Div'): Handler {
  return (c, n) => {
    const a = c.get(n.inputs[0])
    const b = c.get(n.inputs[1])
    // Sizes: int arithmetic, at conversion time when both are known.
    const sa = staticValue(a)
    const sb = staticValue(b)
    if (typeof sa === 'number' && typeof sb === 'number' && n.kind.startsWith('aten::') && (n.kind === 'aten::floordiv' || c.graph.values[n.outputs[0]].type === 'int')) {
      const value = op === 'Add' ? sa + sb : op === 'Sub' ? sa - sb : op === 'Mul' ? sa * sb : Math.floor(sa / sb)
      c.set(n.outputs[0], { kind: 'const', value })
      return
    }
    const isInt = c.graph.values[n.outputs[0]].type === 'int'
    let bName = isInt ? c.intVector(b) : c.asTensor(b)
    const aName = isInt ? c.intVector(a) : c.asTensor(a)
    if ((op === 'Add' || op === 'Sub') && n.inputs.length > 2) {
      const alpha = num(c, n.inputs[2], 'alpha')
      if (alpha !== 1) bName = c.one('Mul', [bName, c.scalar(alpha)])
    }
    c.set(n.outputs[0], { kind: 'tensor', name: c.one(op, [aName, bName]) })
  }
}

function convolution (c: Converter, n: GraphNode): void {
  const [x, w, b] = n.inputs
  const stride = pair(numList(c, n.inputs[3], 'stride'))
  const padding = pair(numList(c, n.inputs[4], 'padding'))
  const dilation = pair(numList(c, n.inputs[5], 'dilation'))
  let transposed = false
  let outputPadding: [number, number] = [0, 0]
  let groups: number
  if (n.kind === 'aten::_convolution') {
    transposed = Boolean(c.constant(n.inputs[6]))
    outputPadding = pair(numList(c, n.inputs[7], 'output_padding'))
    groups = num(c, n.inputs[8], 'groups')
  } else if (n.kind === 'aten::conv_transpose2d') {
    // (input, weight, bias, stride, padding, output_padding, groups, dilation)
    transposed = true
    outputPadding = pair(numList(c, n.inputs[5], 'output_padding'))
    groups = num(c, n.inputs[6], 'groups')
    const d = pair(numList(c, n.inputs[7], 'dilation'))
    dilation[0] = d[0]
    dilation[1] = d[1]
  } else {
    groups = num(c, n.inputs[6], 'groups')
  }
  if (typeof c.constant(n.inputs[4]) === 'string') throw new SegtorchError('ONNX export: string padding of a convolution is not supported')
  const weight = c.get(w)
  const shape = weight.kind === 'weights' ? weight.tensor.shape : undefined
  const inputs = [c.tensor(x), c.asTensor(weight)]
  if (c.constant(b) !== null) inputs.push(c.tensor(b))
  const attrs: Record<string, Attr> = {
    strides: stride,
    pads: [padding[0], padding[1], padding[0], padding[1]],
    dilations: dilation,
    group: groups
  }
  if (shape !== undefined) attrs.kernel_shape = [shape[2], shape[3]]
  if (transposed) attrs.output_padding = outputPadding
  c.set(n.outputs[0], { kind: 'tensor', name: c.one(transposed ? 'ConvTranspose' : 'Conv', inputs, attrs) })
}

function maxPool (c: Converter, n: GraphNode): void {
  // (self, kernel_size, stride, padding, dilation, ceil_mode)
  const kernel = pair(numList(c, n.inputs[1], 'kernel_size'))
  const strideList = numList(c, n.inputs[2], 'stride')
  const stride = strideList.length === 0 ? kernel : pair(strideList)
  const padding = pair(numList(c, n.inputs[3], 'padding'))
  const dilation = pair(numList(c, n.inputs[4], 'dilation'))
  const ceil = Number(c.constant(n.inputs[5]) ?? 0)
  const attrs = { kernel_shape: kernel, strides: stride, pads: [padding[0], padding[1], padding[0], padding[1]], dilations: dilation, ceil_mode: ceil }
  const withIndices = n.kind === 'aten::max_pool2d_with_indices'
  const outs = c.node('MaxPool', [c.tensor(n.inputs[0])], attrs, withIndices ? 2 : 1)
  c.set(n.outputs[0], { kind: 'tensor', name: outs[0] })
  if (withIndices) c.set(n.outputs[1], { kind: 'tensor', name: outs[1] })
}

function avgPool (c: Converter, n: GraphNode): void {
  // (self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
  const kernel = pair(numList(c, n.inputs[1], 'kernel_size'))
  const strideList = numList(c, n.inputs[2], 'stride')
  const stride = strideList.length === 0 ? kernel : pair(strideList)
  const padding = pair(numList(c, n.inputs[3], 'padding'))
  const ceil = Number(c.constant(n.inputs[4]) ?? 0)
  const countIncludePad = Number(c.constant(n.inputs[5]) ?? 1)
  if (n.inputs.length > 6 && c.constant(n.inputs[6]) !== null) throw new SegtorchError('ONNX export: avg_pool2d with divisor_override is not supported')
  const attrs = { kernel_shape: kernel, strides: stride, pads: [padding[0], padding[1], padding[0], padding[1]], ceil_mode: ceil, count_include_pad: countIncludePad }
  c.set(n.outputs[0], { kind: 'tensor', name: c.one('AveragePool', [c.tensor(n.inputs[0])], attrs) })
}

/**
 * Adaptive average pooling of axis `axis` (2 or 3) to `bins`, exactly: bin i covers
 * [floor(i L / b), ceil((i + 1) L / b)) of the length L known at run time.
 */
function adaptiveAxis (c: Converter, x: string, axis: number, bins: number): string {
  const length = c.one('Gather', [c.one('Shape', [x]), c.ints([axis])], { axis: 0 })  // [1]
  const i = c.ints(Array.from({ length: bins }, (_, k) => k))
  const b = c.ints([bins])
  const starts = c.one('Div', [c.one('Mul', [i, length]), b])
  const ends = c.one('Div', [c.one('Add', [c.one('Mul', [c.one('Add', [i, c.ints([1])]), length]), c.ints([bins - 1])]), b])
  // Cumulative sums with a leading zero: S[k] = sum of x[..k)
  const cum = c.one('CumSum', [x, c.ints([axis])], { exclusive: 0 })
  const zeroSlice = c.one('Mul', [c.one('Slice', [x, c.ints([0]), c.ints([1]), c.ints([axis])]), c.scalar(0)])
  const padded = c.one('Concat', [zeroSlice, cum], { axis })
  const sums = c.one('Sub', [c.one('Gather', [padded, ends], { axis }), c.one('Gather', [padded, starts], { axis })])
  const counts = c.one('Cast', [c.one('Sub', [ends, starts])], { to: FLOAT })
  const shape = axis === 2 ? [1, 1, bins, 1] : [1, 1, 1, bins]
  return c.one('Div', [sums, c.one('Reshape', [counts, c.ints(shape)])])
}

function adaptiveAvgPool (c: Converter, n: GraphNode): void {
  const [oh, ow] = pair(numList(c, n.inputs[1], 'output_size'))
  const x = c.tensor(n.inputs[0])
  let y: string
  if (oh === 1 && ow === 1) y = c.one('GlobalAveragePool', [x])
  else y = adaptiveAxis(c, adaptiveAxis(c, x, 2, oh), 3, ow)
  c.set(n.outputs[0], { kind: 'tensor', name: y })
}

function upsample (mode: 'linear' | 'nearest'): Handler {
  return (c, n) => {
    const x = c.tensor(n.inputs[0])
    const sizeValue = c.get(n.inputs[1])
    if (staticValue(sizeValue) === null) throw new SegtorchError(`ONNX export: ${n.kind} with scale factors instead of sizes is not supported`)
    const attrs: Record<string, Attr> = { mode }
    if (mode === 'linear') {
      const alignCorners = Boolean(c.constant(n.inputs[2]))
      attrs.coordinate_transformation_mode = alignCorners ? 'align_corners' : 'pytorch_half_pixel'
    } else {
      attrs.coordinate_transformation_mode = 'asymmetric'
      attrs.nearest_mode = 'floor'
    }
    const sizes = c.withBatchAndChannels(x, sizeValue)
    c.set(n.outputs[0], { kind: 'tensor', name: c.one('Resize', [x, '', '', sizes], attrs) })
  }
}

function maxUnpool (c: Converter, n: GraphNode): void {
  // (self, indices, output_size): kernel and stride from the max_pool2d_with_indices that made the indices
  const pool = c.producer(n.inputs[1])
  if (pool === undefined || pool.kind !== 'aten::max_pool2d_with_indices') {
    throw new SegtorchError('ONNX export: max_unpool2d whose indices do not come from max_pool2d_with_indices is not supported')
  }
  const kernel = pair(numList(c, pool.inputs[1], 'kernel_size'))
  const strideList = numList(c, pool.inputs[2], 'stride')
  const stride = strideList.length === 0 ? kernel : pair(strideList)
  const padding = pair(numList(c, pool.inputs[3], 'padding'))
  const x = c.tensor(n.inputs[0])
  const shape = c.withBatchAndChannels(x, c.get(n.inputs[2]))
  const attrs = { kernel_shape: kernel, strides: stride, pads: [padding[0], padding[1], padding[0], padding[1]] }
  c.set(n.outputs[0], { kind: 'tensor', name: c.one('MaxUnpool', [x, c.tensor(n.inputs[1]), shape], attrs) })
}

function slice (c: Converter, n: GraphNode): void {
  // slice(self, dim, start, end, step) / narrow(self, dim, start, length)
  const x = c.tensor(n.inputs[0])
  const dim = num(c, n.inputs[1], 'dim')
  const start = c.get(n.inputs[2])
  let end: string
  if (n.kind === 'aten::narrow') {
    end = c.one('Add', [c.intVector(start), c.intVector(c.get(n.inputs[3]))])
  } else {
    const e = c.get(n.inputs[3])
    const se = staticValue(e)
    end = se === null || (typeof se === 'number' && se >= END) ? c.ints([END]) : c.intVector(e)
  }
  const startValue = staticValue(start)
  const startName = startValue === null ? c.ints([0]) : c.intVector(start)
  const step = n.kind === 'aten::narrow' ? 1 : num(c, n.inputs[4], 'step')
  c.set(n.outputs[0], { kind: 'tensor', name: c.one('Slice', [x, startName, end, c.ints([dim]), c.ints([step])]) })
}

function constantPad (c: Converter, n: GraphNode): void {
  // torch: pads of the last dims first, (begin, end) pairs; ONNX: all begins then all ends, first dim first
  const x = c.tensor(n.inputs[0])
  const pads = c.get(n.inputs[1])
  const rank = c.graph.values[n.inputs[0]].sizes.length || 4
  const count = (staticValue(pads) as unknown[] | undefined)?.length ?? (pads.kind === 'list' ? pads.items.length : -1)
  if (count < 0 || count % 2 !== 0) throw new SegtorchError('ONNX export: constant_pad_nd with pads of unknown length is not supported')
  const begins: Converted[] = []
  const ends: Converted[] = []
  for (let d = 0; d < rank; d++) {
    const k = rank - 1 - d  // the torch pair index of dim d
    begins.push(2 * k < count ? c.listItem(pads, 2 * k) : { kind: 'const', value: 0 })
    ends.push(2 * k < count ? c.listItem(pads, 2 * k + 1) : { kind: 'const', value: 0 })
  }
  const onnxPads = c.intVector({ kind: 'list', items: [...begins, ...ends] })
  const value = Number(c.constant(n.inputs[2]) ?? 0)
  c.set(n.outputs[0], { kind: 'tensor', name: c.one('Pad', [x, onnxPads, c.scalar(value)], { mode: 'constant' }) })
}

function size (c: Converter, n: GraphNode): void {
  const x = c.tensor(n.inputs[0])
  const dim = num(c, n.inputs[1], 'dim')
  c.set(n.outputs[0], { kind: 'tensor', name: c.one('Gather', [c.one('Shape', [x]), c.ints([dim])], { axis: 0 }) })
}

const HANDLERS: Record<string, Handler> = {
  'prim::Constant': (c, n) => {
    const v = n.value
    if (v instanceof Tensor) c.set(n.outputs[0], { kind: 'weights', tensor: v, name: n.name })
    else if (v !== null && typeof v === 'object' && !Array.isArray(v)) throw new SegtorchError(`ONNX export: a constant of type ${(v as { unsupported?: string }).unsupported ?? 'unknown'} is not supported`)
    else c.set(n.outputs[0], { kind: 'const', value: v })
  },
  'prim::ListConstruct': (c, n) => {
    c.set(n.outputs[0], { kind: 'list', items: n.inputs.map((i) => c.get(i)) })
  },
  'prim::NumToTensor': (c, n) => c.set(n.outputs[0], c.get(n.inputs[0])),
  'aten::Int': (c, n) => c.set(n.outputs[0], c.get(n.inputs[0])),
  'aten::size': size,
  'aten::_convolution': convolution,
  'aten::conv2d': convolution,
  'aten::conv_transpose2d': convolution,
  'aten::relu': unary('Relu'),
  'aten::relu_': unary('Relu'),
  'aten::sigmoid': unary('Sigmoid'),
  'aten::tanh': unary('Tanh'),
  'aten::hardsigmoid': (c, n) => c.set(n.outputs[0], { kind: 'tensor', name: c.one('HardSigmoid', [c.tensor(n.inputs[0])], { alpha: { float: 1 / 6 }, beta: { float: 0.5 } }) }),
  'aten::hardswish': (c, n) => {
    const x = c.tensor(n.inputs[0])
    const y = c.opset >= 14 ? c.one('HardSwish', [x]) : c.one('Mul', [x, c.one('HardSigmoid', [x], { alpha: { float: 1 / 6 }, beta: { float: 0.5 } })])
    c.set(n.outputs[0], { kind: 'tensor', name: y })
  },
  'aten::hardtanh': (c, n) => {
    const lo = num(c, n.inputs[1], 'min_val')
    const hi = num(c, n.inputs[2], 'max_val')
    c.set(n.outputs[0], { kind: 'tensor', name: c.one('Clip', [c.tensor(n.inputs[0]), c.scalar(lo), c.scalar(hi)]) })
  },
  'aten::clamp': (c, n) => {
    const lo = c.constant(n.inputs[1])
    const hi = c.constant(n.inputs[2])
    c.set(n.outputs[0], { kind: 'tensor', name: c.one('Clip', [c.tensor(n.inputs[0]), lo === null ? '' : c.scalar(Number(lo)), hi === null ? '' : c.scalar(Number(hi))]) })
  },
  'aten::leaky_relu': (c, n) => c.set(n.outputs[0], { kind: 'tensor', name: c.one('LeakyRelu', [c.tensor(n.inputs[0])], { alpha: { float: num(c, n.inputs[1], 'negative_slope') } }) }),
  'aten::add': binary('Add'),
  'aten::sub': binary('Sub'),
  'aten::mul': binary('Mul'),
  'aten::div': binary('Div'),
  'aten::floordiv': binary('Div'),
  'aten::remainder': (c, n) => {
    const a = staticValue(c.get(n.inputs[0]))
    const b = staticValue(c.get(n.inputs[1]))
    if (typeof a === 'number' && typeof b === 'number') {
      c.set(n.outputs[0], { kind: 'const', value: ((a % b) + b) % b })
      return
    }
    c.set(n.outputs[0], { kind: 'tensor', name: c.one('Mod', [c.intVector(c.get(n.inputs[0])), c.intVector(c.get(n.inputs[1]))], { fmod: 0 }) })
  },
  'aten::cat': (c, n) => {
    const list = c.get(n.inputs[0])
    if (list.kind !== 'list') throw new SegtorchError('ONNX export: aten::cat of a list computed in the graph is not supported')
    const axis = num(c, n.inputs[1], 'dim')
    c.set(n.outputs[0], { kind: 'tensor', name: c.one('Concat', list.items.map((i) => c.asTensor(i)), { axis }) })
  },
  'aten::max_pool2d': maxPool,
  'aten::max_pool2d_with_indices': maxPool,
  'aten::avg_pool2d': avgPool,
  'aten::adaptive_avg_pool2d': adaptiveAvgPool,
  'aten::upsample_bilinear2d': upsample('linear'),
  'aten::upsample_nearest2d': upsample('nearest'),
  'aten::max_unpool2d': maxUnpool,
  'aten::dropout': (c, n) => c.set(n.outputs[0], c.get(n.inputs[0])),
  'aten::feature_dropout': (c, n) => c.set(n.outputs[0], c.get(n.inputs[0])),
  'aten::contiguous': (c, n) => c.set(n.outputs[0], c.get(n.inputs[0])),
  'aten::clone': (c, n) => c.set(n.outputs[0], c.get(n.inputs[0])),
  'aten::detach': (c, n) => c.set(n.outputs[0], c.get(n.inputs[0])),
  'aten::batch_norm': (c, n) => {
    // (input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled): BNs that could not be folded
    if (c.constant(n.inputs[5]) === true) throw new SegtorchError('ONNX export: batch_norm in training mode is not supported')
    const eps = num(c, n.inputs[7], 'eps')
    const inputs = [0, 1, 2, 3, 4].map((i) => c.tensor(n.inputs[i]))
    c.set(n.outputs[0], { kind: 'tensor', name: c.one('BatchNormalization', inputs, { epsilon: { float: eps } }) })
  },
  'aten::slice': slice,
  'aten::narrow': slice,
  'aten::constant_pad_nd': constantPad,
  'aten::expand': (c, n) => {
    // -1 keeps a dimension: 1 under ONNX's broadcasting
    const sizes = c.get(n.inputs[1])
    const items = sizes.kind === 'list' ? sizes.items : ((staticValue(sizes) as number[]).map((v) => ({ kind: 'const', value: v }) as Converted))
    const fixed = items.map((i): Converted => staticValue(i) === -1 ? { kind: 'const', value: 1 } : i)
    c.set(n.outputs[0], { kind: 'tensor', name: c.one('Expand', [c.tensor(n.inputs[0]), c.intVector({ kind: 'list', items: fixed })]) })
  },
  'aten::view': (c, n) => c.set(n.outputs[0], { kind: 'tensor', name: c.one('Reshape', [c.tensor(n.inputs[0]), c.intVector(c.get(n.inputs[1]))]) }),
  'aten::reshape': (c, n) => c.set(n.outputs[0], { kind: 'tensor', name: c.one('Reshape', [c.tensor(n.inputs[0]), c.intVector(c.get(n.inputs[1]))]) }),
  'aten::permute': (c, n) => c.set(n.outputs[0], { kind: 'tensor', name: c.one('Transpose', [c.tensor(n.inputs[0])], { perm: numList(c, n.inputs[1], 'dims') }) }),
  'aten::softmax': (c, n) => c.set(n.outputs[0], { kind: 'tensor', name: c.one('Softmax', [c.tensor(n.inputs[0])], { axis: num(c, n.inputs[1], 'dim') }) }),
  'aten::mean': (c, n) => {
    const dims = numList(c, n.inputs[1], 'dim')
    const keep = Boolean(c.constant(n.inputs[2]))
    const x = c.tensor(n.inputs[0])
    let y: string
    if (keep && dims.length === 2 && dims[0] === 2 && dims[1] === 3) y = c.one('GlobalAveragePool', [x])
    else if (c.opset >= 18) y = c.one('ReduceMean', [x, c.ints(dims)], { keepdims: keep ? 1 : 0 })
    else y = c.one('ReduceMean', [x], { axes: dims, keepdims: keep ? 1 : 0 })
    c.set(n.outputs[0], { kind: 'tensor', name: y })
  }
}

/** The ONNX model of a traced graph. */
export function convert (graph: TracedGraph, o: ConvertOptions): Uint8Array {
  const c = new Converter(graph, o.opset)
  c.set(graph.input, { kind: 'tensor', name: 'images' })
  for (const n of graph.nodes) {
    const handler = HANDLERS[n.kind]
    if (handler === undefined) {
      throw new SegtorchError(`ONNX export: the operator ${n.kind} is not supported by segtorch's ONNX converter`)
    }
    handler(c, n)
  }
  let out = c.tensor(graph.output)
  let elemType = FLOAT
  if (o.output === 'labels') {
    out = c.one('Cast', [c.one('ArgMax', [out], { axis: 1, keepdims: 0 })], { to: INT32 })
    elemType = INT32
  }
  // Name the output: an Identity from whatever produced it.
  const outputName = o.output
  c.nodes.push({ opType: 'Identity', input: [out], output: [outputName], name: 'output' })
  const [n, ch, h, w] = o.inputShape
  const dim = (fixed: number, param: string): onnx.TensorShapeProto.IDimension => o.dynamicSize ? { dimParam: param } : { dimValue: fixed }
  const outDims = o.output === 'labels'
    ? [dim(n, 'batch'), dim(h, 'height'), dim(w, 'width')]
    : [dim(n, 'batch'), { dimValue: o.numClasses }, dim(h, 'height'), dim(w, 'width')]
  const model: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: o.opset }],
    producerName: 'segtorch',
    producerVersion: o.producerVersion,
    graph: {
      name: 'segtorch',
      node: c.nodes,
      initializer: c.initializers,
      input: [{ name: 'images', type: { tensorType: { elemType: FLOAT, shape: { dim: [dim(n, 'batch'), { dimValue: ch }, dim(h, 'height'), dim(w, 'width')] } } } }],
      output: [{ name: outputName, type: { tensorType: { elemType, shape: { dim: outDims } } } }]
    },
    metadataProps: Object.entries(o.metadata).map(([key, value]) => ({ key, value }))
  }
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish()
}
