// Debian's headless Chromium for the browser tests, driven with puppeteer-core. Found on PATH (or
// CHROME_PATH); when missing and this runs as root on Debian/Ubuntu it is installed with apt-get
// once (a few minutes); otherwise the tests that need it are skipped with the reason printed.
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import type { Browser } from 'puppeteer-core'

let found: { path: string | null, reason: string } | undefined

function onPath (name: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null
}

/** Chromium's path, or null with the reason (installs it with apt-get when root on Debian/Ubuntu). */
export function chromium (): { path: string | null, reason: string } {
  if (found) return found
  const fromEnv = process.env.CHROME_PATH
  if (fromEnv && fs.existsSync(fromEnv)) return (found = { path: fromEnv, reason: '' })
  const names = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']
  for (const n of names) {
    const p = onPath(n)
    if (p) return (found = { path: p, reason: '' })
  }
  const root = typeof process.getuid === 'function' && process.getuid() === 0
  if (!root || !onPath('apt-get')) return (found = { path: null, reason: 'no Chromium (apt-get install chromium, or set CHROME_PATH)' })
  console.log('      (installing Debian\'s chromium with apt-get for the browser tests ...)')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  let r = spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'chromium'], { env, encoding: 'utf8' })
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-q'], { env })
    r = spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'chromium'], { env, encoding: 'utf8' })
  }
  const p = onPath('chromium')
  return (found = p ? { path: p, reason: '' } : { path: null, reason: `apt-get install chromium failed: ${(r.stderr || '').trim().split('\n').pop()}` })
}

/**
 * A headless Chromium (no sandbox: tests run as root in containers), without LD_PRELOAD: under
 * scripts/sanitize.sh that preloads the ASan runtime, which Chromium (not built with it) dies of.
 */
export async function launch (executablePath: string): Promise<Browser> {
  const puppeteer = await import('puppeteer-core')
  const env = { ...process.env }
  delete env.LD_PRELOAD
  return await puppeteer.launch({
    executablePath,
    env,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-extensions']
  })
}
