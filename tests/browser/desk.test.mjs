// Browser tests of the review desk: Debian's Chromium, headless, driven by playwright-core.
//
// The test starts its own server: the `attune` binary (ATTUNE_BIN, default
// target/debug/attune) on a temp SQLite database filled by `attune demo --once` and
// `attune-bench seed-nudges` (ATTUNE_BENCH_BIN, default beside ATTUNE_BIN), listening on
// a free port. Screenshots of every page are kept
// in tests/browser/artifacts/ (or ATTUNE_ARTIFACTS).
//
//   cd tests/browser && npm ci && node --test desk.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const bin = process.env.ATTUNE_BIN || path.join(root, 'target', 'debug', 'attune');
const benchBin =
  process.env.ATTUNE_BENCH_BIN || path.join(path.dirname(bin), 'attune-bench');
const artifacts = process.env.ATTUNE_ARTIFACTS || path.join(here, 'artifacts');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const USERS = {
  admin: { password: 'admin-password-1', role: 'admin' },
  maria: { password: 'maria-password-1', role: 'reviewer' },
  vic: { password: 'vic-password-1', role: 'viewer' },
};

let dir, db, server, base, browser, serverLog = '';

// attune refuses ATTUNE_* variables that are not its settings, so this test's own are kept
// from it.
const childEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) => k !== 'ATTUNE_BIN' && k !== 'ATTUNE_BENCH_BIN' && k !== 'ATTUNE_ARTIFACTS',
  ),
);

function attune(args, input) {
  return run(bin, args, input);
}

function attuneBench(args) {
  return run(benchBin, args);
}

function run(program, args, input) {
  return execFileSync(program, ['--db', db, ...args], {
    input,
    encoding: 'utf8',
    env: { ...childEnv, ATTUNE_LOG_FILTER: 'warn' },
  });
}

async function startServer() {
  server = spawn(bin, ['--db', db, '--log-format', 'json', 'run'], {
    env: {
      ...childEnv,
      ATTUNE_HTTP_LISTEN: '127.0.0.1:0',
      ATTUNE_WORKER_SHUTDOWN_GRACE_SECS: '3',
      ATTUNE_LOG_FILTER: 'info,sqlx=warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not say where it listens:\n${serverLog}`)), 30000);
    server.stderr.setEncoding('utf8');
    server.stderr.on('data', (chunk) => {
      serverLog += chunk;
      for (const line of chunk.split('\n')) {
        if (!line.includes('review desk listening')) continue;
        try {
          const url = JSON.parse(line).fields.url;
          clearTimeout(timer);
          resolve(url);
        } catch { /* not this line */ }
      }
    });
    server.on('exit', (code) => reject(new Error(`the server exited with ${code}:\n${serverLog}`)));
  });
}

async function shot(page, name) {
  const file = path.join(artifacts, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function signIn(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/queue`);
  assert.match(page.url(), /\/login\?next=/, 'signed-out people are sent to the sign-in page');
  await page.fill('#name', name);
  await page.fill('#password', USERS[name].password);
  await page.click('button[type=submit]');
  await page.waitForURL(/\/queue/);
  assert.equal(await page.textContent('#whoami'), name);
  return { context, page };
}

/// Cell texts of one column of the queue table.
async function column(page, index) {
  return page.$$eval(`#queue tbody tr td:nth-child(${index})`, (tds) => tds.map((td) => td.textContent.trim()));
}

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  dir = mkdtempSync(path.join(tmpdir(), 'attune-browser-'));
  db = path.join(dir, 'desk.db');
  attune(['demo', '--once', '--customers', '300']);
  attuneBench(['seed-nudges', '--count', '600', '--customers', '300', '--proposed-share', '0.9']);
  for (const [name, u] of Object.entries(USERS)) {
    attune(['users', 'add', name, '--role', u.role, '--password-stdin'], `${u.password}\n`);
  }
  base = await startServer();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  console.log(`screenshots: ${artifacts}`);
});

after(async () => {
  if (browser) await browser.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal })));
    server.kill('SIGTERM');
    const { code } = await exited;
    assert.equal(code, 0, `the server stops cleanly on SIGTERM:\n${serverLog.slice(-2000)}`);
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a reviewer filters the queue, edits and approves a nudge, bulk-rejects a selection, and sees it all in the audit log', async () => {
  const { context, page } = await signIn('maria');
  await shot(page, '01-queue');
  const values = await column(page, 8);
  assert.ok(values.length > 0, 'the queue shows proposed nudges');

  // Filter by rule and channel with the form.
  await page.selectOption('#filters select[name=rule]', 'welcome');
  await page.selectOption('#filters select[name=channel]', 'email');
  await page.click('#filters button[type=submit]');
  await page.waitForURL(/rule=welcome/);
  assert.match(page.url(), /channel=email/);
  const rules = await column(page, 3);
  const channels = await column(page, 5);
  assert.ok(rules.length > 0, 'some welcome emails are queued');
  assert.ok(rules.every((r) => r === 'welcome'), `only welcome nudges: ${rules}`);
  assert.ok(channels.every((c) => c === 'email'), `only email: ${channels}`);
  const amounts = (await column(page, 8)).filter((v) => v.trim() !== '—');
  assert.ok(amounts.length > 0, 'some nudges have a value at risk');
  assert.ok(amounts.every((v) => /^\$[0-9,]+\.[0-9]{2}$/.test(v.trim())), `amounts in dollars: ${amounts}`);
  const known = amounts.map((v) => Number(v.replace(/[$,]/g, '')));
  assert.deepEqual(known, [...known].sort((a, b) => b - a), 'sorted by value at risk, largest first');
  await shot(page, '02-queue-filtered');

  // Open the first nudge, edit its message and approve it.
  const id = await page.$eval('#queue tbody tr', (tr) => tr.dataset.id);
  await page.click(`#queue tbody tr[data-id="${id}"] td:nth-child(1) a`);
  await page.waitForURL(new RegExp(`/nudges/${id}$`));
  assert.equal(await page.textContent('#status'), 'proposed');
  const planned = await page.textContent('#message');
  assert.match(await page.textContent('#why'), /signed up|week/);
  await shot(page, '03-nudge');
  const edited = `Hi there,\n\nWelcome aboard! (edited by the browser test ${Date.now()})`;
  await page.fill('#edit-message', edited);
  await page.click('#approve');
  await page.waitForURL(new RegExp(`/nudges/${id}\\?done=approved`));
  assert.equal(await page.textContent('#status'), 'approved');
  assert.equal((await page.textContent('#message')).trim(), edited.trim());
  assert.equal((await page.textContent('#planned-message')).trim(), planned.trim(), 'the planned message is kept beside the edit');
  assert.equal(await page.$('#actions'), null, 'a decided nudge offers no actions');
  await shot(page, '04-nudge-approved');

  // Bulk-reject every proposed renewal by SMS, after a confirmation that says how many.
  await page.goto(`${base}/queue?rule=renewal&channel=sms`);
  const shown = (await column(page, 1)).length;
  assert.ok(shown > 0 && shown < 50, `a small selection to reject (${shown})`);
  await page.click('#bulk-reject');
  await page.waitForURL(/\/queue\/bulk\?/);
  const count = Number(await page.textContent('#bulk-count'));
  assert.equal(count, shown, 'the confirmation states how many will be rejected');
  assert.match(await page.textContent('#bulk-summary'), /reject/);
  await page.fill('#reason', 'renewal texts are paused this month');
  await shot(page, '05-bulk-confirm');
  await page.click('#bulk-confirm');
  await page.waitForURL(/done=rejected/);
  assert.match(await page.textContent('#notice'), new RegExp(`^${count} nudges? rejected`));
  assert.equal((await column(page, 1)).length, 0, 'none of them is proposed any more');
  await shot(page, '06-queue-after-bulk');

  // Every decision is in the audit log, with who and what.
  await page.goto(`${base}/audit?subject=nudge:${id}`);
  const actions = await page.$$eval('#audit tbody tr', (trs) => trs.map((tr) => tr.dataset.action));
  assert.deepEqual(actions, ['nudge.approved', 'nudge.edited']);
  assert.match(await page.textContent('#audit tbody'), /maria/);
  await page.goto(`${base}/audit?action=nudge.rejected&actor=maria`);
  const rejected = await page.$$eval('#audit tbody tr', (trs) => trs.length);
  assert.equal(rejected, count, 'one audit entry per rejected nudge');
  assert.match(await page.textContent('#audit tbody'), /renewal texts are paused this month/);
  await shot(page, '07-audit');
  await context.close();
});

test('a viewer sees no action buttons and cannot decide', async () => {
  const { context, page } = await signIn('vic');
  assert.equal(await page.$('#bulk-reject'), null, 'no bulk actions for a viewer');
  assert.equal(await page.$('#bulk-approve'), null);
  const id = await page.$eval('#queue tbody tr', (tr) => tr.dataset.id);
  await page.goto(`${base}/nudges/${id}`);
  assert.equal(await page.$('#actions'), null, 'no actions on the nudge page');
  assert.equal(await page.$('#approve'), null);
  assert.equal(await page.$('textarea'), null);
  await shot(page, '08-viewer-nudge');
  // Even a well-formed form with the viewer's own CSRF token is refused.
  const csrf = await page.$eval('input[name=csrf]', (i) => i.value);
  const res = await page.request.post(`${base}/nudges/${id}/decide`, { form: { csrf, action: 'approve' } });
  assert.equal(res.status(), 403);
  await page.reload();
  assert.equal(await page.textContent('#status'), 'proposed');
  await context.close();
});

test('a forged POST is refused and changes nothing', async () => {
  const { context, page } = await signIn('maria');
  const id = await page.$eval('#queue tbody tr', (tr) => tr.dataset.id);
  // Signed in, but without the session's CSRF token, or with a wrong one.
  for (const form of [{ action: 'approve' }, { action: 'approve', csrf: 'not-the-token' }]) {
    const res = await page.request.post(`${base}/nudges/${id}/decide`, { form });
    assert.equal(res.status(), 403, JSON.stringify(form));
    assert.match(await res.text(), /CSRF token is missing or does not match/);
  }
  // A page on another site posting a form to the desk: the SameSite cookie stays home.
  const other = await context.newPage();
  await other.setContent(`<form id="f" method="post" action="${base}/nudges/${id}/decide">
    <input name="action" value="approve"></form>`);
  await Promise.all([other.waitForNavigation(), other.$eval('#f', (f) => f.submit())]);
  assert.match(await other.textContent('body'), /not signed in|CSRF/);
  await shot(other, '09-forged-post');
  await page.goto(`${base}/nudges/${id}`);
  assert.equal(await page.textContent('#status'), 'proposed', 'the nudge is still proposed');
  await context.close();
});

test('the overview, model, users and sign-in pages render', async () => {
  const { context, page } = await signIn('admin');
  await page.goto(`${base}/overview`);
  assert.match(await page.textContent('#at-risk'), /%/);
  assert.ok(await page.$('svg'), 'charts are inline SVG');
  assert.match(await page.textContent('#uplift'), /held out[\s\S]*too few customers/i);
  await shot(page, '10-overview');
  await page.goto(`${base}/model`);
  assert.match(await page.textContent('body'), /ROC/);
  await shot(page, '11-model');
  await page.goto(`${base}/users`);
  const users = await page.$$eval('#users tbody tr', (trs) => trs.map((tr) => tr.dataset.user));
  assert.deepEqual(users.sort(), ['admin', 'maria', 'vic']);
  await shot(page, '12-users');
  await context.close();
  const anon = await browser.newContext();
  const login = await anon.newPage();
  await login.goto(`${base}/login`);
  await login.fill('#name', 'maria');
  await login.fill('#password', 'wrong password');
  await login.click('button[type=submit]');
  assert.match(await login.textContent('#login-error'), /do not match/);
  await shot(login, '13-login-refused');
  await anon.close();
});

test('a reviewer finds a customer, reads their page, sees a held offer and an overview after a re-score that changed nothing', async () => {
  const { context, page } = await signIn('maria');
  // The search box in the header takes a customer id to their page: one with a complaint.
  let customer;
  for (const rule of ['ombudsman_notice', 'complaint_unresolved_task', 'complaint_reopened_task', 'bill_shock', 'usage_drop']) {
    for (const status of ['proposed', 'approved', 'holdout', 'deferred']) {
      await page.goto(`${base}/queue?rule=${rule}&status=${status}`);
      const cells = await column(page, 2);
      if (cells.length) { customer = cells[0].split(/\s/)[0]; break; }
    }
    if (customer) break;
  }
  assert.ok(customer, 'a demo customer with a nudge of their own');
  await page.fill('input[name=q]', customer);
  await page.press('input[name=q]', 'Enter');
  await page.waitForURL(/\/customers\//);
  assert.match(await page.textContent('h1'), new RegExp(customer));
  assert.ok(await page.$('#profile'), 'the profile');
  assert.ok(await page.$('#complaints'), 'the complaints panel');
  assert.ok(await page.$('#nudges'), 'their nudges');
  await shot(page, '14-customer');

  // An offer held while its customer's complaint is open says so.
  await page.goto(`${base}/queue?status=deferred`);
  const held = await page.$$eval('#queue tbody tr a[href^="/nudges/"]', (as) => as.map((a) => a.getAttribute('href')));
  let found = false;
  for (const href of held.slice(0, 60)) {
    await page.goto(`${base}${href}`);
    const decision = await page.$('#decision');
    if (decision && /held while the complaint opened/.test(await decision.textContent())) {
      found = true;
      break;
    }
  }
  assert.ok(found, 'a held offer with its reason among the deferred nudges');
  await shot(page, '15-held-offer');

  // A re-score that found nobody changed: the overview keeps the full run's figures and says so.
  attune(['score', '--changed']);
  await page.goto(`${base}/overview`);
  const note = await page.textContent('h1');
  assert.match(note, /current scores: full scoring run/);
  assert.match(note, /found no customer whose activity had changed/);
  assert.doesNotMatch(await page.textContent('#at-risk'), /of 0 scored/);
  await shot(page, '16-overview-after-rescore');
  await context.close();
});

test('a nudge whose customer has two complaints shows both, and a weekly review budget defers the rest', async () => {
  const { context, page } = await signIn('maria');
  // A complaint nudge whose customer has had two complaints: its page lists both.
  let twice = null;
  for (const rule of ['complaint_unresolved_task', 'ombudsman_notice', 'complaint_reopened_task', 'complaint_follow_up']) {
    for (const status of ['proposed', 'approved', 'deferred', 'holdout']) {
      await page.goto(`${base}/queue?rule=${rule}&status=${status}&limit=100`);
      const hrefs = await page.$$eval('#queue tbody tr a[href^="/nudges/"]', (as) => as.map((a) => a.getAttribute('href')));
      for (const href of hrefs.slice(0, 40)) {
        await page.goto(`${base}${href}`);
        if ((await page.$$('#complaints tbody tr')).length >= 2) { twice = href; break; }
      }
      if (twice) break;
    }
    if (twice) break;
  }
  assert.ok(twice, 'a complaint nudge whose customer has two complaints');
  const rows = await page.$$eval('#complaints tbody tr', (trs) => trs.map((tr) => tr.textContent));
  assert.ok(rows.length >= 2, `both complaints listed: ${rows}`);
  assert.ok(rows.some((r) => /resolved|open/i.test(r)), `each with its state: ${rows}`);
  await shot(page, '17-nudge-two-complaints');

  // The overview says what each rule proposes a week; a budget of 2 for the rule with the
  // most nudges in review leaves 2 in the queue and defers the rest with the reason.
  await page.goto(`${base}/overview`);
  const budgetRows = await page.$$eval('#budget-table tbody tr', (trs) => trs.map((tr) => [tr.dataset.rule, tr.children[2].textContent.trim()]));
  assert.ok(budgetRows.length >= 5, `a row per rule: ${budgetRows}`);
  let busiest = null;
  let most = 0;
  for (const [rule] of budgetRows) {
    await page.goto(`${base}/queue?rule=${rule}&status=proposed&limit=100`);
    const n = (await column(page, 1)).length;
    if (n > most) { most = n; busiest = rule; }
  }
  assert.ok(most > 2, `a rule with more than 2 nudges in review (${busiest}: ${most})`);
  await page.goto(`${base}/overview`);
  await page.fill(`#budget-table tr[data-rule="${busiest}"] input[name=weekly]`, '2');
  await page.click(`#budget-table tr[data-rule="${busiest}"] button[type=submit]`);
  await page.waitForURL(/\/overview\?budget=/);
  assert.match(await page.textContent('#budgets'), /is saved and applied/);
  const row = await page.textContent(`#budget-table tr[data-rule="${busiest}"]`);
  assert.match(row, /2 of 2/);
  await shot(page, '18-overview-budgets');
  await page.goto(`${base}/queue?rule=${busiest}&status=proposed&limit=100`);
  assert.equal((await column(page, 1)).length, 2, 'two left in review');
  await page.goto(`${base}/queue?rule=${busiest}&status=deferred&limit=100`);
  const waiting = await page.$$eval('#queue tbody tr a[href^="/nudges/"]', (as) => as.map((a) => a.getAttribute('href')));
  assert.ok(waiting.length >= most - 2, `the rest wait: ${waiting.length}`);
  await page.goto(`${base}${waiting[0]}`);
  assert.match(await page.textContent('#decision'), /weekly review budget \(2 a week\)/);
  await context.close();
});
