/**
 * `segtorch train`: a model from its options, data from a spec, model.fit with checkpoints in a run
 * folder, a progress bar, Ctrl-C to stop resumably, and a report at the end.
 */
import * as fs from 'fs'
import * as path from 'path'
import type { Command } from 'commander'
import { Dataset } from '../data/datasets'
import { loader, LoaderOptions } from '../data/loader'
import { toPlanar } from '../data/images'
import type { History, EpochRecord } from '../fit'
import { createModel, loadModel, Model } from '../model'
import { ARCHITECTURES } from '../models'
import { checkWritableDir, makeDirSync } from '../files'
import { writeReport, ReportSample, StepRecord, ReportMetrics } from '../report'
import * as distributed from '../distributed'
import { tensor } from '../tensor'
import { holdout, NAMED, openSpec, parseSpec } from './data'
import { RECIPES, RecipeName, recipeOptionsFor, TrainingOptions, trainingPlan } from '../recipes'
import { classWeights, ClassWeighting } from '../data/stats'
import { isRandomAccess } from '../data/datasets'
import { keyOf, OptionDef, readConfig, resolveOptions, UsageError } from './options'
import { createProgress } from './progress'

export const TRAIN_OPTIONS: readonly OptionDef[] = [
  { flags: '--config <file>', kind: 'string', description: 'JSON file of options (camelCase or flag names); flags given here override it' },
  { flags: '--recipe <name>', kind: 'string', choices: Object.keys(RECIPES), description: 'a named configuration (segtorch recipes lists them); --config and flags override its fields' },
  { flags: '--arch <name>', kind: 'string', choices: Object.keys(ARCHITECTURES), description: 'architecture' },
  { flags: '--backbone <name>', kind: 'string', description: "backbone network (default: the architecture's; see segtorch info)" },
  { flags: '--output-stride <n>', kind: 'int', min: 8, max: 32, description: 'output stride of the backbone (8, 16 or 32)' },
  { flags: '--aux', kind: 'bool', negatable: true, description: 'auxiliary head for deep supervision' },
  { flags: '--model-option <key=value>', kind: 'pairs', description: 'architecture option, e.g. baseChannels=16 (repeatable; see segtorch info)' },
  { flags: '--channels <n>', kind: 'int', min: 1, max: 3, default: 3, description: 'image channels: 1 (grey) or 3 (RGB)' },
  { flags: '--data <spec>', kind: 'string', description: 'training data: camvid:DIR, voc:DIR, cityscapes:DIR, ade20k:DIR (#SPLIT optional), membrane:DIR or folder:IMAGES,MASKS' },
  { flags: '--val <spec>', kind: 'string', description: "validation data: a data spec, a split of --data's data set (val), or a fraction of it to hold out (0.1)" },
  { flags: '--classes <names>', kind: 'list', description: 'folder data: class names separated by commas, or their number' },
  { flags: '--ignore-index <n>', kind: 'int', min: 0, max: 255, description: 'folder data: mask value of unlabelled pixels [default: 255]' },
  { flags: '--mask-suffix <s>', kind: 'string', description: "folder data: masks named <image stem><suffix>.png (e.g. '_mask')" },
  { flags: '--epochs <n>', kind: 'int', min: 1, description: 'passes over the data [default: 1 unless --iterations]' },
  { flags: '--iterations <n>', kind: 'int', min: 1, description: 'optimizer steps in all (stops there, mid-epoch if need be)' },
  { flags: '--time-limit <duration>', kind: 'duration', description: "training time (1500, 1500s, 25m, 2h); without --epochs / --iterations the schedule runs over it" },
  { flags: '--batch-size <n>', kind: 'int', min: 1, default: 8, description: 'images per step' },
  { flags: '--lr <x>', kind: 'number', min: 0, default: 0.01, description: 'base learning rate' },
  { flags: '--optimizer <name>', kind: 'string', choices: ['sgd', 'adam', 'adamw'], default: 'sgd', description: 'optimizer' },
  { flags: '--momentum <x>', kind: 'number', min: 0, max: 1, default: 0.9, description: 'SGD momentum' },
  { flags: '--weight-decay <x>', kind: 'number', min: 0, default: 1e-4, description: 'weight decay' },
  { flags: '--schedule <name>', kind: 'string', choices: ['constant', 'poly', 'cosine'], default: 'poly', description: 'learning-rate schedule over the run' },
  { flags: '--warmup <n>', kind: 'int', min: 0, default: 0, description: 'linear warm-up steps' },
  { flags: '--loss <name>', kind: 'string', choices: ['ce', 'ohem', 'dice', 'focal', 'lovasz'], default: 'ce', description: 'loss of the main output' },
  { flags: '--class-weights <w>', kind: 'weights', description: "loss weight per class: numbers separated by commas, or median-frequency (SegNet's) / sqrt-median-frequency, computed from the training masks" },
  { flags: '--ohem-threshold <p>', kind: 'number', min: 0, max: 1, description: '--loss ohem: pixels whose true-class probability is at most this are kept [default: 0.7]' },
  { flags: '--ohem-min-kept <n>', kind: 'int', min: 0, description: '--loss ohem: at least this many pixels are kept [default: 100000]' },
  { flags: '--aux-weight <x>', kind: 'number', min: 0, description: 'weight of auxiliary losses (--aux, PSPNet) [default: 0.4]' },
  { flags: '--head-lr-multiplier <x>', kind: 'number', min: 0, description: 'learning-rate multiplier of the layers outside the backbone [default: 1]' },
  { flags: '--precision <p>', kind: 'string', choices: ['auto', 'fp32', 'bf16', 'fp16'], default: 'auto', description: 'training precision: auto (bf16 on a CPU with native bf16, fp16 on CUDA, else fp32), bf16 autocast (CPU or CUDA), fp16 (CUDA)' },
  { flags: '--resize <size>', kind: 'size', description: 'resample every image to N or HxW first (training and validation)' },
  { flags: '--crop <size>', kind: 'size', description: 'random crop N or HxW (without it, batches are padded to their largest image)' },
  { flags: '--scale <min,max>', kind: 'numbers', default: [0.5, 2], description: "random scale range, or 'none'" },
  { flags: '--flip', kind: 'bool', negatable: true, default: true, description: 'random horizontal flips (--no-flip: none)' },
  { flags: '--jitter <x>', kind: 'number', min: 0, max: 1, default: 0, description: 'colour jitter: brightness, contrast and saturation factors in [1 - x, 1 + x] (0: none)' },
  { flags: '--seed <n>', kind: 'int', min: 0, description: 'seed of the data order, augmentation and initialisation [default: random, stored in run.json]' },
  { flags: '--out <dir>', kind: 'string', description: 'run folder (checkpoints, history, report) [default: runs/<arch>-<time>, or the resumed run]' },
  { flags: '--resume <path>', kind: 'string', description: 'continue a run: its folder or a checkpoint file (its options come back from run.json)' },
  { flags: '--device <d>', kind: 'string', default: 'cpu', description: "'cpu', 'cuda' or 'cuda:N'" },
  { flags: '--validate-every <n>', kind: 'int', min: 1, default: 1, description: 'epochs between validations' },
  { flags: '--samples <n>', kind: 'int', min: 0, default: 4, description: 'sample predictions drawn in the report' },
  { flags: '--log-every <n>', kind: 'int', min: 1, description: 'steps between log lines when stderr is not a terminal' },
  { flags: '--nproc-per-node <n>', kind: 'int', min: 1, description: 'data-parallel training with this many processes on this machine (segtorch launch starts them; under torchrun or launch each process is a rank)' }
]

/** Options that describe the run (stored in run.json, given back on --resume). */
const NOT_STORED = ['config', 'resume', 'out', 'nprocPerNode']

export interface TrainResult {
  dir: string
  history: History
  aborted: boolean
}

function stamp (): string {
  const d = new Date()
  const p = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`
}

/** A data spec with its folders made absolute (run.json works from any folder). */
export function absoluteSpec (spec: string): string {
  const m = /^([a-z0-9]+):(.+)$/.exec(spec)
  if (!m) return spec
  if (m[1] === 'folder') return `folder:${m[2].split(',').map((p) => path.resolve(p)).join(',')}`
  const hash = m[2].lastIndexOf('#')
  return hash >= 0 ? `${m[1]}:${path.resolve(m[2].slice(0, hash))}${m[2].slice(hash)}` : `${m[1]}:${path.resolve(m[2])}`
}

function readJson (file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch {
    return undefined
  }
}

/** Where a --resume argument points: the checkpoint and its run folder. */
function resumeTarget (arg: string): { file: string, dir: string } {
  if (!fs.existsSync(arg)) throw new UsageError(`Expected a run folder or checkpoint for --resume but ${arg} does not exist`)
  if (fs.statSync(arg).isDirectory()) {
    const file = path.join(arg, 'last.segtorch')
    if (!fs.existsSync(file)) throw new UsageError(`Expected a checkpoint last.segtorch in ${arg} for --resume but there is none (was the run stopped before its first checkpoint?)`)
    return { file, dir: arg }
  }
  return { file: arg, dir: path.dirname(arg) }
}

function readSteps (file: string, upTo: number): StepRecord[] {
  if (!fs.existsSync(file)) return []
  return fs.readFileSync(file, 'utf8').split('\n').slice(1).filter((l) => l.trim()).map((l) => {
    const [step, epoch, loss, lr] = l.split(',').map(Number)
    return { step, epoch, loss, lr }
  }).filter((s) => Number.isFinite(s.step) && s.step <= upTo)
}

function writeSteps (file: string, steps: readonly StepRecord[]): void {
  fs.writeFileSync(file, 'step,epoch,loss,lr\n' + steps.map((s) => `${s.step},${s.epoch},${s.loss},${s.lr}`).join('\n') + (steps.length ? '\n' : ''))
}

/** Predictions on the first `n` samples of a data set, for the report. */
export async function predictSamples (model: Model, ds: Dataset, n: number): Promise<ReportSample[]> {
  const out: ReportSample[] = []
  for (let i = 0; i < Math.min(n, ds.length); i++) {
    let s
    try {
      s = await ds.get(i)
    } catch {
      continue // an unreadable sample is the loader's business, not the report's
    }
    const img = { data: s.image, width: s.width, height: s.height, channels: s.channels }
    const x = tensor(toPlanar(img), [1, s.channels, s.height, s.width])
    const p = await model.predict(x)
    const labels = p.dataSync().slice() // a copy: dispose() frees the tensor's memory
    x.dispose()
    p.dispose()
    out.push({ name: s.file, image: img, truth: s.mask, prediction: labels })
  }
  return out
}

export async function runTrain (cmd: Command, o0: Record<string, unknown>, log: (line: string) => void): Promise<TrainResult> {
  // Sources of options: run.json of a resumed run < --config < flags.
  const config = typeof o0.config === 'string' ? readConfig(o0.config) : {}
  const resumeArg = typeof o0.resume === 'string' ? o0.resume : (typeof config.resume === 'string' ? config.resume : undefined)
  let resume: { file: string, dir: string } | undefined
  let base: Record<string, unknown> = {}
  if (resumeArg !== undefined) {
    resume = resumeTarget(resumeArg)
    const run = readJson(path.join(resume.dir, 'run.json')) as { options?: Record<string, unknown> } | undefined
    base = run?.options ?? {}
  }
  // The recipe (from the flags, the config file or the resumed run) sits below all of them.
  const recipeName = [o0.recipe, config.recipe, base.recipe].find((x) => x !== undefined)
  let lowest: { values: Record<string, unknown>, where: string } | undefined
  if (recipeName !== undefined) {
    if (typeof recipeName !== 'string' || !(recipeName in RECIPES)) throw new UsageError(`Expected a recipe name (${Object.keys(RECIPES).join(', ')}) for --recipe but received ${typeof recipeName === 'string' ? `'${recipeName}'` : JSON.stringify(recipeName)}`)
    // --model-option merges over the recipe's (options.ts), unless --arch names another network.
    const arch = [o0.arch, config.arch, base.arch].find((x) => x !== undefined)
    lowest = { values: { ...recipeOptionsFor(RECIPES[recipeName as RecipeName], arch) }, where: `recipe ${recipeName}` }
  }
  const o = resolveOptions(cmd, TRAIN_OPTIONS, base, config, typeof o0.config === 'string' ? o0.config : undefined, lowest)
  if (o.data === undefined) throw new UsageError('Expected --data (where the training images are) but received none')
  if (o.arch === undefined && resume === undefined) throw new UsageError(`Expected --arch (one of ${Object.keys(ARCHITECTURES).join(', ')}) but received none`)
  if (o.channels !== 1 && o.channels !== 3) throw new UsageError(`Expected 1 or 3 for --channels but received ${String(o.channels)}`)
  const channels = o.channels as 1 | 3
  // Data parallel (a rank started by segtorch launch or torchrun): every rank agrees on rank 0's
  // seed; rank 0 alone logs, shows progress and writes the run folder.
  const isRank = process.env.RANK !== undefined && Number(process.env.WORLD_SIZE ?? 1) > 1
  let seed = (o.seed as number | undefined) ?? Math.floor(Math.random() * 2 ** 31)
  if (isRank) {
    await distributed.init()
    const mine = tensor(new BigInt64Array([BigInt(distributed.rank === 0 ? seed : 0)]), [1])
    const agreed = await distributed.allReduce(mine, 'max', 'agreeing on the seed')
    seed = Number(agreed.dataSync()[0])
    mine.dispose()
    agreed.dispose()
    if (distributed.rank !== 0) log = () => {}
  }
  const main = !isRank || distributed.rank === 0
  o.seed = seed
  o.data = absoluteSpec(o.data as string)

  // Data
  const spec = parseSpec('--data', o.data as string)
  const dataOpts = { channels, classes: o.classes as string[] | undefined, ignoreIndex: o.ignoreIndex as number | undefined, maskSuffix: o.maskSuffix as string | undefined }
  let train = openSpec('--data', spec, { split: 'train', ...dataOpts })
  let val: Dataset | undefined
  let valName: string | undefined
  const v = o.val as string | undefined
  if (v !== undefined) {
    if (/^(0?\.\d+|0)$/.test(v)) {
      const f = Number(v)
      if (!(f > 0 && f < 1)) throw new UsageError(`Expected a fraction between 0 and 1 for --val but received '${v}'`)
      const split = holdout(train, f, seed)
      train = split.train
      val = split.val
      valName = `${val.length} images held out of --data`
    } else if (/^[a-z]+$/.test(v)) {
      if (spec.kind === 'folder') throw new UsageError(`Expected a data spec or a fraction for --val with folder data but received the split name '${v}'`)
      if (!NAMED[spec.kind].splits.includes(v)) throw new UsageError(`Expected a ${spec.kind} split (${NAMED[spec.kind].splits.join(', ')}) for --val but received '${v}'`)
      val = openSpec('--val', { ...spec, split: v }, { split: v, ...dataOpts })
      valName = `${spec.kind} ${v}`
    } else {
      o.val = absoluteSpec(v)
      const vs = parseSpec('--val', o.val as string)
      val = openSpec('--val', vs, { split: 'val', ...dataOpts })
      valName = o.val as string
    }
    if (val.classes.length !== train.classes.length) throw new UsageError(`Expected validation data with the ${train.classes.length} classes of the training data but it has ${val.classes.length}`)
  }
  const classes = train.classes
  const palette = train.palette

  // Class weights from the training masks (median-frequency rules), then the plan: createModel's, loader's and fit's options.
  let weights: number[] | undefined
  if (typeof o.classWeights === 'string') {
    log(`counting class pixels of the ${train.length} training masks for --class-weights ${o.classWeights} ...`)
    if (!isRandomAccess(train)) throw new UsageError(`Expected random-access training data for --class-weights ${o.classWeights}`)
    weights = await classWeights(train, o.classWeights as ClassWeighting)
    log(`class weights: ${classes.map((c, i) => `${c} ${(weights as number[])[i].toFixed(3)}`).join(', ')}`)
  } else if (Array.isArray(o.classWeights) && o.classWeights.length !== classes.length) {
    throw new UsageError(`Expected ${classes.length} class weights (one per class of --data) for --class-weights but received ${o.classWeights.length}`)
  }
  const plan = trainingPlan(o as unknown as TrainingOptions, { classWeights: weights, ignoreIndex: train.ignoreIndex })

  // Model
  let model: Model
  let startEpoch = 0
  const dir = path.resolve((o.out as string | undefined) ?? resume?.dir ?? path.join('runs', `${o.arch as string}-${stamp()}`))
  checkWritableDir(dir, 'the output folder (--out)')
  if (resume) {
    model = await loadModel(resume.file, { device: o.device as 'cpu' })
    if (model.config.numClasses !== classes.length) throw new UsageError(`Expected data with the checkpoint's ${model.config.numClasses} classes but --data has ${classes.length}`)
    const h = readJson(path.join(resume.dir, 'history.json')) as History | undefined
    startEpoch = h?.epochs?.length ?? 0
  } else {
    const extra = (o.modelOption as Record<string, unknown> | undefined) ?? {}
    for (const k of Object.keys(extra)) {
      if (!(k in ARCHITECTURES[o.arch as 'fcn'].options)) {
        const known = Object.keys(ARCHITECTURES[o.arch as 'fcn'].options)
        throw new UsageError(`Expected an option of ${o.arch as string} for --model-option (${known.length ? known.join(', ') : 'it has none'}) but received '${k}'`)
      }
    }
    model = await createModel({ ...plan.model, numClasses: classes.length, inChannels: channels, device: o.device as 'cpu' })
  }
  if (main) makeDirSync(dir, 'the output folder (--out)')
  const stored = Object.fromEntries(Object.entries(o).filter(([k]) => !NOT_STORED.includes(k)))
  // (a resumed run stores its options as they are now: a later --resume goes on with them)
  if (main) fs.writeFileSync(path.join(dir, 'run.json'), JSON.stringify({ segtorch: 'train', options: stored, model: model.config, classes, palette, ignoreIndex: train.ignoreIndex }, null, 2) + '\n')

  // Data loaders: each epoch its own seeded order, so that a resumed run sees the same batches.
  const loaderOptions: LoaderOptions = { ...plan.loader, ...(isRank ? { shard: 'auto' as const } : {}) }
  const first = loader(train, { ...loaderOptions, seed })
  let epochCounter = startEpoch
  const source = {
    get length () { return first.length as number },
    get skipped () { return current?.skipped },
    [Symbol.asyncIterator] () {
      current = loader(train, { ...loaderOptions, seed: seed + 7919 * epochCounter++ })
      return current[Symbol.asyncIterator]()
    }
  }
  let current: ReturnType<typeof loader> | undefined
  const validation = val === undefined ? undefined : loader(val, { ...plan.validationLoader, ...(isRank ? { shard: { rank: distributed.rank, worldSize: distributed.worldSize, pad: false } } : {}) })
  const perEpoch = first.length as number
  // progress: steps in all when known (a time limit alone: unknown)
  const total = (o.iterations as number | undefined) ?? (o.timeLimit !== undefined && o.epochs === undefined ? undefined : perEpoch * ((o.epochs as number | undefined) ?? 1))
  const startStep = model.info().steps

  const stepsFile = path.join(dir, 'steps.csv')
  const steps = resume ? readSteps(stepsFile, startStep) : []
  const info = model.info()
  log(`segtorch train: ${info.arch} (${info.backbone}), ${(info.parameters / 1e6).toFixed(2)} M parameters, ${classes.length} classes, ${train.length} training images` +
    `${val ? `, ${val.length} validation images` : ''}; run folder ${dir}`)
  if (resume) log(`resuming from ${resume.file} at step ${startStep}`)
  log(`options${o.recipe !== undefined ? ` (recipe ${o.recipe as string}, with overrides)` : ''}: ${TRAIN_OPTIONS.map((d) => keyOf(d.flags)).filter((k) => k in stored && k !== 'data').map((k) => [k, stored[k]] as const).map(([k, x]) => `${k}=${typeof x === 'object' ? JSON.stringify(x) : String(x)}`).join(' ')}`)

  const progress = main ? createProgress('train', total, startStep, { every: o.logEvery as number | undefined }) : { log: () => {}, update: () => {}, stop: () => {} }
  const ac = new AbortController()
  let interrupts = 0
  const onSigint = (): void => {
    interrupts++
    if (interrupts === 1) {
      progress.log('Ctrl-C: stopping after the current step and writing a checkpoint (Ctrl-C again quits at once)')
      ac.abort()
    } else {
      progress.stop()
      process.stderr.write('segtorch: interrupted\n')
      process.exit(130)
    }
  }
  process.on('SIGINT', onSigint)
  let history: History
  const t0 = Date.now()
  try {
    history = await model.fit(source, {
      ...plan.fit,
      ...(validation ? { validation } : {}),
      checkpointDir: dir,
      signal: ac.signal,
      seed,
      ...(isRank ? { distributed: true } : {}),
      ...(resume ? { resume: resume.file } : {}),
      onStep: (s) => {
        steps.push({ step: s.step, epoch: s.epoch, loss: s.loss, lr: s.lr })
        progress.update(s.step, { loss: s.loss, lr: s.lr, epoch: s.epoch })
      },
      onEpoch: (r: EpochRecord) => {
        if (main) writeSteps(stepsFile, steps)
        const val = r.validation ? `  val mIoU ${(100 * r.validation.mIoU).toFixed(2)} %  pixel acc ${(100 * r.validation.pixelAccuracy).toFixed(2)} %` : ''
        progress.log(`epoch ${r.epoch + 1}: loss ${r.loss.toFixed(4)}  ${r.imagesPerSecond.toFixed(1)} img/s${val}`)
      }
    })
  } finally {
    progress.stop()
    process.removeListener('SIGINT', onSigint)
  }
  const aborted = history.stopped === 'aborted'
  if (!main) {
    model.dispose()
    await distributed.destroy()
    return { dir, history, aborted }
  }
  writeSteps(stepsFile, steps)
  if (!aborted) await model.save(path.join(dir, 'model.segtorch'))

  // Report: metrics of the last validation, pictures of validation (else training) images.
  const last = [...history.epochs].reverse().find((e) => e.validation)?.validation
  const metrics: ReportMetrics | undefined = last
  const samples = await predictSamples(model, val ?? train, o.samples as number)
  const files = await writeReport(dir, {
    title: `segtorch ${info.arch} (${info.backbone}) on ${path.basename(spec.root)}`,
    history,
    steps,
    classes,
    palette,
    metrics,
    metricsOn: valName,
    samples,
    summary: {
      architecture: info.arch,
      backbone: info.backbone,
      parameters: `${(info.parameters / 1e6).toFixed(2)} M`,
      data: o.data as string,
      'training images': train.length,
      ...(val ? { validation: `${valName} (${val.length} images)` } : {}),
      'seconds (this session)': ((Date.now() - t0) / 1000).toFixed(1)
    },
    config: stored
  })
  model.dispose()
  if (isRank) await distributed.destroy()
  if (aborted) {
    log(`stopped at step ${history.steps}; checkpoint ${path.join(dir, 'last.segtorch')}`)
    log(`resume with: segtorch train --resume ${dir}`)
  } else {
    if (last) log(`validation: mIoU ${(100 * last.mIoU).toFixed(2)} %, pixel accuracy ${(100 * last.pixelAccuracy).toFixed(2)} %`)
    log(`model ${path.join(dir, 'model.segtorch')}, report ${files.html}`)
  }
  return { dir, history, aborted }
}
