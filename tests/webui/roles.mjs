// The web UI with role tokens (started by tests/webui.rs):
//   node roles.mjs <base-url> <screenshot-dir> <reader-token> <operator-token> <job-id>
// A reader sees who is signed in and cannot press what it may not do; an
// operator can run and disable but not delete, and a create it tries
// shows the server's 403 message. Exits non-zero on the first failed check.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const [base, outDir, reader, operator, jobId] = process.argv.slice(2);
if (!jobId) {
  console.error('usage: node roles.mjs <base-url> <screenshot-dir> <reader-token> <operator-token> <job-id>');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.KALA_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
const errors = [];
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
});
page.on('pageerror', (e) => errors.push(e.message));
const shot = (name) => page.screenshot({ path: `${outDir}/${name}.png`, fullPage: true });
const step = (msg) => console.log('step:', msg);
function check(cond, msg) {
  if (!cond) throw new Error('check failed: ' + msg);
}
const disabled = (sel) => page.$eval(sel, (b) => b.disabled);

try {
  step('a reader signs in and is shown');
  await page.goto(base + '/webui/#/jobs');
  await page.waitForSelector('#login[open]');
  await page.fill('#login-token', reader);
  await page.click('#login-ok');
  await page.waitForSelector('#who:not([hidden])');
  const who = await page.textContent('#who');
  check(who.includes('ui-reader') && who.includes('reader'), 'who shows the reader: ' + who);
  check(await page.$eval('a[data-nav="new"]', (a) => a.hidden), 'New job is hidden from a reader');

  step('a reader cannot press run, disable, delete or edit');
  await page.goto(base + '/webui/#/job/' + jobId);
  await page.waitForSelector('#run-now');
  for (const b of ['#run-now', '#disable', '#delete', '#edit-notify']) {
    check(await disabled(b), b + ' is disabled for a reader');
  }
  const title = await page.$eval('#delete', (b) => b.title);
  check(title.includes('editor'), 'the disabled button says what it needs: ' + title);
  await shot('10-reader-job');

  step('sign out; an operator signs in');
  await page.click('#sign-out');
  await page.waitForSelector('#login[open]');
  await page.fill('#login-token', operator);
  await page.click('#login-ok');
  await page.waitForFunction(() => (document.querySelector('#who') || {}).textContent?.includes('operator'));
  await page.goto(base + '/webui/#/jobs');
  await page.goto(base + '/webui/#/job/' + jobId);
  await page.waitForSelector('#run-now');
  check(!(await disabled('#disable')), 'an operator may disable');
  check(await disabled('#delete'), 'an operator may not delete');
  await page.click('#disable');
  await page.waitForSelector('#enable');
  await shot('11-operator-disabled');

  step('a create by an operator shows the server\'s 403');
  await page.goto(base + '/webui/#/new');
  await page.waitForSelector('#new-job');
  check(await page.$eval('#f-type option[value="0"]', (o) => o.disabled), 'local commands are not offered');
  await page.fill('#f-name', 'not mine to make');
  await page.fill('#f-remote-url', 'http://127.0.0.1:9/');
  await page.click('#create');
  await page.waitForSelector('#form-error:not([hidden])');
  const err = await page.textContent('#form-error');
  check(/needs the editor role/.test(err), 'the form shows the 403 message, got: ' + err);
  await shot('12-operator-403');

  step('the audit log page shows who did what');
  await page.click('a[data-nav="audit"]');
  await page.waitForSelector('#audit tbody tr');
  const log = await page.textContent('#audit');
  check(log.includes('ui-operator') && log.includes('disable'), 'the operator\'s disable is in the log: ' + log.slice(0, 300));
  check(log.includes('refused'), 'the refused create is in the log');
  await shot('13-audit');

  check(errors.length === 0, 'no JavaScript errors: ' + errors.join('; '));
  console.log('webui roles: all checks passed');
} catch (e) {
  await shot('roles-failure').catch(() => {});
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
