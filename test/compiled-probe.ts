import { createModel, setNumThreads } from '../lib'
import { randomImages } from './helpers'
import { labelAgreement, relativeError } from './export-check'
void (async () => {
  setNumThreads(2)
  for (const arch of (process.argv[2] ?? 'unet').split(',')) {
    const m = await createModel({ arch, numClasses: 4, ...(arch === 'unet' ? { baseChannels: 16 } : { backbone: 'resnet18' }) } as never)
    for (const precision of ['fp32', 'bf16'] as const) {
      const x = randomImages(1, 3, 256, 256, 3)
      const o = { output: 'logits' as const, precision, foldBatchNorm: true, channelsLast: true }
      const a = (await m.predict(x, o)).dataSync() as Float32Array
      let t0 = Date.now()
      const b = (await m.predict(x, { ...o, compile: true })).dataSync() as Float32Array
      const tc = Date.now() - t0
      const N = 5
      t0 = Date.now(); for (let i = 0; i < N; i++) await m.predict(x, o); const te = (Date.now() - t0) / N
      t0 = Date.now(); for (let i = 0; i < N; i++) await m.predict(x, { ...o, compile: true }); const tj = (Date.now() - t0) / N
      console.log(arch, precision, 'err', relativeError(b, a).toExponential(2), 'agree', labelAgreement(b, a, [1, 4, 256, 256]).toFixed(4), 'compile ms', tc, 'eager ms', te, 'compiled ms', tj, JSON.stringify(await m.compiledStats()))
    }
    m.dispose()
  }
})()
