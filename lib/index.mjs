// ES module entry: the CommonJS build re-exported by name.
import cjs from './index.js'

export const {
  tensor, zeros, Tensor, createModel, loadModel, Model, ARCHITECTURES,
  SegtorchError, SegtorchLoadError, backend, setNumThreads, version,
  loss, depthLoss, confusionMatrix, metrics, data, report
} = cjs
export default cjs
