/**
 * Progress of long work: a bar (cli-progress: it/s, loss, lr, ETA) when stderr is a terminal,
 * plain log lines every few steps otherwise (logs, CI, pipes).
 */
import { SingleBar } from 'cli-progress'

export interface ProgressUpdate {
  loss?: number
  lr?: number
  epoch?: number
}

export interface Progress {
  /** Steps done so far. */
  update (done: number, info?: ProgressUpdate): void
  /** A line of text, printed above the bar (or as is without one). */
  log (line: string): void
  stop (): void
}

function duration (s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?'
  if (s < 60) return `${Math.round(s)} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
}

/**
 * `total` steps (undefined when unknown), starting at `start` (a resumed run). Without a
 * terminal a line is written at the first step, then every `every` steps or 20 seconds, and at the end.
 */
export function createProgress (label: string, total: number | undefined, start: number, o: { stream?: NodeJS.WriteStream, tty?: boolean, every?: number, unit?: string } = {}): Progress {
  const stream = o.stream ?? process.stderr
  const tty = o.tty ?? (stream.isTTY === true && process.env.CI === undefined)
  const t0 = Date.now()
  let rate = NaN // steps per second, smoothed
  let lastDone = start
  let lastTime = t0
  let lastLine = 0
  const every = o.every ?? Math.max(1, Math.floor((total ?? 200) / 20))
  const fmtLoss = (x?: number): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(4))
  const fmtLr = (x?: number): string => (x === undefined ? '-' : x.toPrecision(3))
  const measure = (done: number): void => {
    const now = Date.now()
    if (done > lastDone) {
      const r = (done - lastDone) / Math.max(1e-3, (now - lastTime) / 1000)
      rate = Number.isNaN(rate) ? r : 0.8 * rate + 0.2 * r
      lastDone = done
      lastTime = now
    }
  }

  if (tty) {
    const bar = new SingleBar({
      stream,
      format: `${label} [{bar}] {value}/{total} | {speed} it/s${o.unit === undefined ? ' | loss {loss} | lr {lr}' : ''} | ETA {left}`,
      barCompleteChar: '#',
      barIncompleteChar: '-',
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 20,
      fps: 5
    })
    bar.start(total ?? 0, start, { speed: '-', loss: '-', lr: '-', left: '?' })
    return {
      update (done, info = {}) {
        measure(done)
        const eta = total !== undefined && rate > 0 ? duration((total - done) / rate) : '?'
        bar.update(done, { speed: Number.isFinite(rate) ? rate.toFixed(2) : '-', loss: fmtLoss(info.loss), lr: fmtLr(info.lr), left: eta })
      },
      log (line) {
        // clear the bar's line, print, and let the bar redraw below
        stream.write('\r\x1b[2K' + line + '\n')
        bar.render()
      },
      stop () {
        bar.stop()
      }
    }
  }

  return {
    update (done, info = {}) {
      measure(done)
      const now = Date.now()
      const first = done === start + 1
      const last = total !== undefined && done >= total
      if (!(first || last || done % every === 0 || now - lastLine > 20000)) return
      lastLine = now
      const eta = total !== undefined && rate > 0 ? `  ETA ${duration((total - done) / rate)}` : ''
      const epoch = info.epoch === undefined ? '' : `  epoch ${info.epoch + 1}`
      const loss = info.loss === undefined ? '' : `  loss ${fmtLoss(info.loss)}`
      const lr = info.lr === undefined ? '' : `  lr ${fmtLr(info.lr)}`
      stream.write(`${label} ${o.unit ?? 'step'} ${done}${total !== undefined ? `/${total}` : ''}${epoch}${loss}${lr}  ${Number.isFinite(rate) ? rate.toFixed(2) : '-'} it/s${eta}\n`)
    },
    log (line) {
      stream.write(line + '\n')
    },
    stop () {}
  }
}
