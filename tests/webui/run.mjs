// Drives kala's web UI in a real browser (Debian's chromium through
// playwright-core). Started by tests/webui.rs with a running kala-server:
//   node run.mjs <base-url> <screenshot-dir> [token]
// Exits non-zero with a message on the first failed check.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const [base, outDir, token] = process.argv.slice(2);
if (!base || !outDir) {
  console.error('usage: node run.mjs <base-url> <screenshot-dir> [token]');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.KALA_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
const consoleErrors = [];
// JavaScript errors fail the test. The browser also logs every 4xx answer
// ("Failed to load resource"); the bad schedule and the token prompt cause
// those on purpose, so they are not errors of the page.
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(e.message));
// Nothing may leave loopback: every asset ships in the binary.
const external = [];
page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith('data:')) external.push(r.url()); });

// An API call from the page, with the token the page keeps.
const apiCall = (method, path, body) => page.evaluate(async ([method, path, body]) => {
  const headers = { 'Content-Type': 'application/json' };
  const t = sessionStorage.getItem('kala-token');
  if (t) headers.Authorization = 'Bearer ' + t;
  const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  return { status: r.status, body: await r.text() };
}, [method, path, body]);
const shot = (name) => page.screenshot({ path: `${outDir}/${name}.png`, fullPage: true });
const step = (msg) => console.log('step:', msg);
function check(cond, msg) {
  if (!cond) throw new Error('check failed: ' + msg);
}

try {
  step('/ redirects to /webui/');
  await page.goto(base + '/');
  check(page.url().startsWith(base + '/webui'), 'redirected to /webui/, got ' + page.url());

  if (token) {
    step('asks for the token once');
    await page.waitForSelector('#login[open]');
    await shot('00-token');
    await page.fill('#login-token', token);
    await page.click('#login-ok');
  }

  step('empty job list');
  await page.waitForSelector('#view h1:text("Jobs")');
  await shot('01-empty-list');

  step('a bad schedule shows the server\'s error in the form');
  await page.click('a[data-nav="new"]');
  await page.waitForSelector('#new-job');
  await page.fill('#f-name', 'bad schedule');
  await page.fill('#f-command', 'true');
  await page.fill('#f-schedule', 'R2/2017-06-04T19:25:16Z/PT10S');
  await page.waitForSelector('#schedule-preview strong');
  await page.click('#create');
  await page.waitForSelector('#form-error:not([hidden])');
  const err = await page.textContent('#form-error');
  check(/^schedule: .*in the past/.test(err), 'form shows the server error, got: ' + err);
  check(await page.$('#f-schedule.invalid'), 'the schedule field is marked');
  await shot('02-bad-schedule');

  step('the schedule helper shows the next 5 runs as you type');
  const start = new Date(Date.now() + 8000).toISOString().replace(/\.\d+Z$/, 'Z');
  await page.fill('#f-name', 'hello from the browser');
  await page.fill('#f-owner', 'ui@example.com');
  await page.fill('#f-command', "bash -c 'echo hello from kala'");
  await page.fill('#f-schedule', `R/${start}/PT1S`);
  await page.waitForSelector('#next-runs li:nth-child(5)');
  await shot('03-create-form');

  step('remote fields appear only for remote jobs');
  check(!(await page.isVisible('#f-remote-url')), 'remote URL hidden for a local job');
  await page.selectOption('#f-type', '1');
  check(await page.isVisible('#f-remote-url'), 'remote URL shown for a remote job');
  await page.selectOption('#f-type', '0');

  step('create the job through the form');
  await page.click('#create');
  await page.waitForSelector('#job-name:text("hello from the browser")');

  step('see it run and its history appear (no reload)');
  await page.waitForSelector('#runs tr.run:nth-child(2)', { timeout: 20000 });
  const firstResult = await page.textContent('#runs tr.run td:nth-child(3)');
  check(firstResult.includes('succeeded'), 'a run succeeded, got ' + firstResult);
  await page.click('#runs tr.run details summary');
  const out = await page.textContent('#runs tr.run pre.out');
  check(out.includes('hello from kala'), 'output tail shown, got ' + out);
  const runCell = await page.textContent('#runs tr.run td.run-id');
  const runTitle = await page.getAttribute('#runs tr.run td.run-id div[title]', 'title');
  check(/KALA_RUN_ID [0-9a-f-]{36}/.test(runTitle || ''), 'the run id is shown, got ' + runTitle + ' in ' + runCell);
  check(await page.$('#durations rect'), 'duration chart drawn');
  await shot('04-job-detail');

  step('disable it');
  await page.click('#disable');
  await page.waitForSelector('#enable');
  check((await page.textContent('#view')).includes('disabled'), 'state shows disabled');
  await shot('05-disabled');

  step('job list shows it, with the filter');
  await page.click('a[data-nav="jobs"]');
  await page.waitForSelector('#jobs tr[data-id]');
  await page.fill('#filter', 'hello');
  check((await page.$$('#jobs tbody tr')).length === 1, 'filter keeps the job');
  const row = await page.textContent('#jobs tbody tr');
  check(row.includes('every second') && row.includes('disabled'), 'row shows schedule in words and state: ' + row);
  await page.fill('#filter', '');
  await shot('06-job-list');

  step('dashboard');
  await page.click('a[data-nav="dashboard"]');
  await page.waitForSelector('#stat-jobs');
  check((await page.textContent('#stat-success .v')).trim() !== '0', 'dashboard counts successes');
  // The rate is the server's, right at first sight (runs happened in the
  // last minute), not measured from when the page opened.
  const rpm = (await page.textContent('#stat-rpm .v')).trim();
  check(Number(rpm) > 0, 'runs per minute at first sight: ' + rpm);
  const health = JSON.parse((await apiCall('GET', '/healthz')).body);
  const startedShown = (await page.textContent('#server-started')).trim();
  check(startedShown.length > 0 && health.started, 'the server start is shown: ' + startedShown);
  await shot('07-dashboard');

  step('cluster page');
  await page.click('a[data-nav="cluster"]');
  await page.waitForSelector('#view h1:text("Cluster")');
  const alone = await page.textContent('#view');
  check(alone.includes('runs alone'), 'an instance on the embedded store says it runs alone: ' + alone);
  check(alone.includes('role=browser-test'), 'the instance\'s tags are shown: ' + alone);
  await page.goBack();

  step('delete it, with confirmation naming the child deleted with it');
  await page.goBack();
  await page.click('#jobs tbody tr a');
  await page.waitForSelector('#delete');
  const parentId = (await page.textContent('dl.fields dd code')).trim();
  const child = await apiCall('POST', '/api/v1/job/', { name: 'only child', command: 'true', parent_jobs: [parentId] });
  check(child.status === 201, 'child created: ' + JSON.stringify(child));
  await page.reload();
  await page.waitForSelector('#delete');
  await page.click('#delete');
  await page.waitForSelector('#confirm[open] #cascade li');
  check((await page.textContent('#cascade')).includes('only child'), 'the dialog names the child');
  await shot('08-delete-confirm');
  await page.click('#confirm-ok');
  await page.waitForSelector('#view h1:text("Jobs")');
  await page.waitForSelector('.empty');
  await shot('09-after-delete');

  step('notifications: an email target needs an SMTP server; the form marks the field');
  await page.click('a[data-nav="new"]');
  await page.waitForSelector('#new-job');
  await page.fill('#f-name', 'notify me');
  await page.fill('#f-command', 'false');
  await page.fill('#f-notify-email', 'ops@example.com');
  await page.click('#create');
  await page.waitForSelector('#form-error:not([hidden])');
  const nerr = await page.textContent('#form-error');
  check(/^notify\[0\]\.email: .*SMTP/.test(nerr), 'email refused without SMTP, got: ' + nerr);
  check(await page.$('#f-notify-email.invalid'), 'the email field is marked');

  step('notifications: a webhook target, its delivery shown in the run history');
  await page.fill('#f-notify-email', '');
  // POST to /healthz answers 405: the notice is dropped at once (a 4xx
  // does not change by retrying), with the error in the badge's title.
  await page.fill('#f-notify-webhook', base + '/healthz');
  await page.check('#f-notify-on-success');
  await page.click('#create');
  await page.waitForSelector('#job-name:text("notify me")');
  const targets = await page.textContent('#notify-targets');
  check(targets.includes('failure, success') && targets.includes('/healthz'), 'targets shown: ' + targets);
  await page.waitForSelector('#runs td.notified .badge.bad', { timeout: 20000 });
  const badge = await page.textContent('#runs td.notified .badge');
  check(badge.includes('webhook dropped'), 'delivery state shown: ' + badge);
  const why = await page.getAttribute('#runs td.notified .badge', 'title');
  check(why.includes('HTTP 405'), 'the error is in the title: ' + why);
  await shot('09a-notifications');

  step('notifications: edit the targets');
  await page.click('#edit-notify');
  await page.waitForSelector('#confirm[open] #notify-json');
  await page.fill('#notify-json', '[{"on": ["retry"], "webhook": "https://hooks.example.com/kala"}]');
  await page.click('#confirm-ok');
  await page.waitForSelector('#notify-targets:has-text("retry")');
  const notifyId = (await page.textContent('dl.fields dd code')).trim();
  const stored = JSON.parse((await apiCall('GET', `/api/v1/job/${notifyId}/`)).body).job.notify;
  check(JSON.stringify(stored) === '[{"on":["retry"],"webhook":"https://hooks.example.com/kala"}]', 'stored: ' + JSON.stringify(stored));
  check((await apiCall('DELETE', `/api/v1/job/${notifyId}/`)).status === 204, 'deleted');

  step('publish jobs and run_on: the form sets them, the job page shows them, the run publishes');
  await page.click('a[data-nav="new"]');
  await page.waitForSelector('#new-job');
  await page.selectOption('#f-type', '3');
  check(await page.isVisible('#f-publish-broker'), 'broker field shown for a publish job');
  check(!(await page.isVisible('#f-command')), 'command hidden for a publish job');
  check(!(await page.isVisible('#f-remote-url')), 'remote URL hidden for a publish job');
  await page.fill('#f-name', 'publish from the browser');
  await page.fill('#f-publish-broker', 'evnts');
  await page.fill('#f-publish-to', 'kala.webui.test');
  await page.fill('#f-publish-payload', '{"point": "{{.Run.ScheduledAt}}"}');
  await page.fill('#f-publish-headers', '{"X-Team": "ui"}');
  await page.fill('#f-run_on-tags', 'role=browser-test');
  await page.click('#create');
  await page.waitForSelector('#form-error:not([hidden])');
  const perr = await page.textContent('#form-error');
  check(/^publish\.broker: no broker named "evnts"/.test(perr), 'unknown broker refused, got: ' + perr);
  check(await page.$('#f-publish-broker.invalid'), 'the broker field is marked');
  await page.fill('#f-publish-broker', 'events');
  await page.click('#create');
  await page.waitForSelector('#job-name:text("publish from the browser")');
  const message = await page.textContent('#job-publish');
  check(message.includes('events') && message.includes('kala.webui.test') && message.includes('X-Team: ui'), 'message shown: ' + message);
  const runOn = await page.textContent('#job-run-on');
  check(runOn.includes('1 instance with role=browser-test'), 'run_on shown: ' + runOn);
  await page.waitForSelector('#runs tr.run', { timeout: 20000 });
  const published = await page.textContent('#runs tr.run td:nth-child(3)');
  check(published.includes('succeeded'), 'the publish succeeded (NATS confirmed it), got ' + published);
  await shot('09b-publish-job');
  const publishId = (await page.textContent('dl.fields dd code')).trim();
  check((await apiCall('DELETE', `/api/v1/job/${publishId}/`)).status === 204, 'deleted');

  if (!token) {
    step('a fuller job list for the README');
    const soon = (s) => new Date(Date.now() + s * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    const jobs = [
      { name: 'nightly backup', owner: 'ops@example.com', command: "bash -c 'echo backing up'", schedule: `R/${soon(3600)}/P1D` },
      { name: 'refresh search index', owner: 'search@example.com', command: 'true', schedule: `R/${soon(3)}/PT2S` },
      { name: 'flaky report', owner: 'data@example.com', command: "bash -c 'exit 3'", schedule: `R/${soon(3)}/PT3S` },
      { name: 'weekday digest', owner: 'team@example.com', command: 'true', schedule: 'CRON_TZ=Europe/Berlin 0 9 * * 1-5' },
      { name: 'ping status page', owner: 'ops@example.com', type: 1, schedule: `R/${soon(3)}/PT5S`,
        remote_properties: { url: base + '/healthz', method: 'GET' } },
      { name: 'one-off migration', owner: 'db@example.com', command: 'true' },
      { name: 'paused cleanup', owner: 'ops@example.com', command: 'true', schedule: `R/${soon(600)}/PT1H`, disabled: true },
    ];
    let backupId = null;
    for (const j of jobs) {
      const r = await apiCall('POST', '/api/v1/job/', j);
      check(r.status === 201, 'created ' + j.name + ': ' + JSON.stringify(r));
      if (j.name === 'nightly backup') backupId = JSON.parse(r.body).id;
    }
    const c = await apiCall('POST', '/api/v1/job/', { name: 'verify backup', owner: 'ops@example.com', command: 'true', parent_jobs: [backupId] });
    check(c.status === 201, 'child created: ' + JSON.stringify(c));
    await page.waitForTimeout(6500);
    await page.goto(base + '/webui/#/jobs');
    await page.waitForSelector('#jobs tbody tr:nth-child(8)');
    await page.waitForSelector('#jobs tbody tr:has-text("weekday digest"):has-text("Monday")');
    const childRow = await page.textContent('#jobs tbody tr:has-text("verify backup")');
    check(childRow.includes('after its parent'), 'a child runs after its parent: ' + childRow);
    await shot('10-job-list-many');
  }

  step('every page at 1280 and at 390 pixels wide');
  {
    const list = JSON.parse((await apiCall('GET', '/api/v1/job/?limit=1')).body);
    const someId = Object.keys(list.jobs || {})[0];
    const pages = [['jobs', '#filter'], ['new', '#new-job'], ['dashboard', '#stat-jobs'], ['cluster', '#view h1']];
    if (someId) pages.push(['job/' + someId, '#view h1']);
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: 860 });
      for (const [route, ready] of pages) {
        await page.goto(base + '/webui/#/' + route);
        await page.waitForSelector(ready);
        await page.waitForTimeout(150);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        check(overflow <= 1, `#/${route} at ${width} px: the page scrolls sideways by ${overflow} px`);
        if (route === 'jobs') {
          // The filter's placeholder is shown whole.
          const fits = await page.evaluate(() => {
            const el = document.getElementById('filter');
            const cs = getComputedStyle(el);
            const ctx = document.createElement('canvas').getContext('2d');
            ctx.font = `${cs.fontSize} ${cs.fontFamily}`;
            const room = el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
            return [ctx.measureText(el.placeholder).width, room];
          });
          check(fits[0] <= fits[1], `#/jobs at ${width} px: the filter's placeholder is cut off (${fits[0]} px of text in ${fits[1]} px)`);
        }
        await shot(`w${width}-${route.replace(/\W.*/, '')}`);
      }
    }
    await page.setViewportSize({ width: 1280, height: 860 });
  }

  check(external.length === 0, 'no request left the server: ' + external.join(', '));
  check(consoleErrors.length === 0, 'no console errors: ' + consoleErrors.join(' | '));
  console.log('webui: all checks passed');
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(e.stack || String(e));
  if (consoleErrors.length) console.error('console errors:', consoleErrors);
  await browser.close();
  process.exit(1);
}
await browser.close();
