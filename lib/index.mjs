// ES module entry: the CommonJS build re-exported by name.
import cjs from './index.js'

export const {
  tensor, zeros, Tensor, createModel, loadModel, Model, ARCHITECTURES, loadTorchScript, ScriptModel,
  SegtorchError, SegtorchLoadError, PngError, LimitError, FileError, backend, setNumThreads, cpuMemoryStats, emptyCpuCache, version,
  loss, depthLoss, confusionMatrix, metrics, crf, data, report, distributed, DistributedError
} = cjs
export default cjs
