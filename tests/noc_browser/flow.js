// Drives the NOC console in Debian's chromium (playwright-core, no browser download):
// log in with the admin token, find the open incident and its countdowns, acknowledge it,
// register a change, post a customer-facing update and find it on the public page.
// Usage: node flow.js BASE_URL ADMIN_TOKEN INCIDENT_ID UPDATE_TEXT ARTIFACTS_DIR
// Prints one JSON object of what it saw; exits non-zero on the first failed step.
const { chromium } = require('playwright-core');
const path = require('path');

const [base, token, incident, update, artifacts] = process.argv.slice(2);

function check(condition, what) {
  if (!condition) {
    throw new Error(`step failed: ${what}`);
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic'],
  });
  const seen = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    // The browser asks for /favicon.ico on its own: its 404 is no error of the page.
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.location().url.endsWith('/favicon.ico')) {
        errors.push(`${m.text()} (${m.location().url})`);
      }
    });
    page.on('pageerror', (e) => errors.push(String(e)));

    await page.goto(`${base}/noc`);
    check(page.url().endsWith('/noc/login'), 'no session: sent to the login form');
    await page.fill('input[name=password]', token);
    await Promise.all([page.waitForURL(`${base}/noc`), page.click('button[type=submit]')]);
    seen.board_title = await page.title();

    const card = page.locator('section.card', { hasText: incident }).first();
    await card.waitFor();
    seen.incident_card = await card.innerText();
    // The script counts down: the text changes within a couple of seconds.
    const due = card.locator('time.due').first();
    const first = await due.innerText();
    await page.waitForFunction(
      ([sel, before]) => document.querySelector(sel).textContent !== before,
      ['section.card time.due', first],
      { timeout: 5000 },
    );
    seen.countdown = await due.innerText();
    seen.countdown_class = await due.getAttribute('class');
    await page.screenshot({ path: path.join(artifacts, 'noc-board.png'), fullPage: true });

    await page.click(`a[href="/noc/incidents/${incident}"]`);
    await page.waitForURL(`${base}/noc/incidents/${incident}`);
    await Promise.all([
      page.waitForURL(`${base}/noc/incidents/${incident}`),
      page.click('form[action$="/acknowledge"] button'),
    ]);
    seen.after_acknowledge = await page.locator('section.card p').first().innerText();

    await page.fill('form[action="/noc/changes"] input[name=summary]', 'rollback of the messaging platform');
    await page.fill('form[action="/noc/changes"] input[name=platform]', 'vm-a');
    await Promise.all([
      page.waitForURL(`${base}/noc/incidents/${incident}`),
      page.click('form[action="/noc/changes"] button'),
    ]);

    await page.fill('textarea[name=text]', update);
    await Promise.all([
      page.waitForURL(`${base}/noc/incidents/${incident}`),
      page.click('form[action$="/updates"] button'),
    ]);
    seen.timeline = await page.locator('table', { hasText: 'Customers read' }).innerText();
    await page.screenshot({ path: path.join(artifacts, 'noc-incident.png'), fullPage: true });

    await page.goto(`${base}/noc/incidents/${incident}/postmortem`);
    seen.postmortem_svg = await page.locator('figure svg').count();
    await page.screenshot({ path: path.join(artifacts, 'noc-postmortem.png'), fullPage: true });

    await page.goto(`${base}/`);
    seen.public_page = await page.locator('main').innerText();
    await page.screenshot({ path: path.join(artifacts, 'noc-public-page.png'), fullPage: true });
    seen.errors = errors;
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen));
})().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
