// The web console end to end, in a real browser: alice asks for access to
// a secret that needs approval, bob approves from the link in his mail,
// alice reveals the value, and the auditor finds it all by ticket number.
// Then a phone-width page and the keyboard's first stop.
//
// e2e/e2e_test.go sets up the server and runs this script; run it alone
// with the same environment:
//
//   BASE_URL       the console, e.g. http://127.0.0.1:8080
//   SECRET_ID      the secret alice asks for (needs one approval for view)
//   SECRET_PATH    its path, e.g. /prod/ops/db-admin
//   SECRET_PASSWORD  its password field, which only the reveal may show
//   TICKET         a change ticket the policy accepts (CHG0012345)
//   ARTIFACTS      where the screenshots (NN-name.png) and the CSV go
//   CHROMIUM       the browser (default /usr/bin/chromium)
//
// It prints one line per step and exits 1 on the first failed check, with
// a screenshot of the page it failed on.
import { chromium } from "playwright-core";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`console.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
};
const BASE = env("BASE_URL").replace(/\/+$/, "");
const SECRET_ID = env("SECRET_ID");
const SECRET_PATH = env("SECRET_PATH");
const PASSWORD = env("SECRET_PASSWORD");
const TICKET = env("TICKET");
const ARTIFACTS = env("ARTIFACTS");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const REQUEST_COMMENT = `Index migration on orders DB, ${TICKET}`;
const TICKET_SUMMARY = "Orders DB index migration";
const secretURL = `${BASE}/secrets/${SECRET_ID}`;

class CheckFailed extends Error {}

function check(ok, msg) {
  if (!ok) throw new CheckFailed(msg);
}

// Console errors and uncaught exceptions of every page, by step; CSP
// violations are reported by the browser as console errors. They fail the
// run at the end, so that one run shows every step's.
const problems = [];
let stepNow = 0;

function watch(who, page) {
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const at = m.location()?.url;
    problems.push(`step ${stepNow}, ${who}: console error on ${page.url()}: ${m.text()}${at && at !== page.url() ? ` (${at})` : ""}`);
  });
  page.on("pageerror", (e) => problems.push(`step ${stepNow}, ${who}: uncaught ${e.name}: ${e.message} on ${page.url()}`));
}

let browser;
const contexts = {};

// user opens a fresh browser context (its own cookies) for a demo user.
async function user(name) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  ctx.setDefaultTimeout(20_000);
  ctx.setDefaultNavigationTimeout(30_000);
  ctx.on("page", (p) => watch(name, p));
  contexts[name] = ctx;
  return ctx;
}

// signIn expects the dev identity provider's page and picks a user there.
async function signIn(page, label) {
  await page.getByRole("heading", { name: "Escrow dev sign-in", exact: true }).waitFor();
  check((await page.title()) === "Escrow dev sign-in", `expected the dev sign-in page, got "${await page.title()}" at ${page.url()}`);
  await page.getByRole("button", { name: `Sign in as ${label}`, exact: true }).click();
}

async function text(locator) {
  return ((await locator.textContent()) ?? "").trim();
}

let current; // the page a failure is shown on
let shot = 0;

async function screenshot(page, name) {
  shot++;
  const file = path.join(ARTIFACTS, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return path.basename(file);
}

async function step(n, title, fn) {
  const t0 = Date.now();
  const seen = problems.length;
  stepNow = n;
  const shots = await fn();
  const errs = problems.length > seen ? `; ${problems.length - seen} browser error(s), listed at the end` : "";
  console.log(`step ${n}: ${title}: ok (${Date.now() - t0} ms; ${shots.join(", ")}${errs})`);
}

async function run() {
  await mkdir(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  console.log(`${CHROMIUM} ${browser.version()}; console ${BASE}`);

  const alice = await user("alice");
  const ap = await alice.newPage();
  current = ap;
  let requestID, mailLink;

  await step(1, "alice opens the secret, signs in, and cannot reveal it", async () => {
    await ap.goto(secretURL);
    await signIn(ap, "Alice");
    await ap.waitForURL(secretURL);
    await ap.getByRole("heading", { level: 1 }).waitFor();
    check((await ap.locator("[data-testid=reveal-button]").count()) === 0, "alice has a Reveal button before any approval");
    check(!(await ap.content()).includes(PASSWORD), "the secret's value is in the page's HTML before any reveal");
    check(await ap.locator("[data-testid=no-reveal]").isVisible(), "[data-testid=no-reveal] is not visible");
    return [await screenshot(ap, "alice-secret-no-reveal")];
  });

  await step(2, "alice requests 1h of access with a comment and the ticket", async () => {
    const form = ap.locator("[data-testid=request-form]");
    await form.getByLabel("For how long", { exact: true }).selectOption("1h0m0s");
    await form.getByLabel(/^Comment/).fill(REQUEST_COMMENT);
    await form.getByLabel("Ticket number", { exact: true }).fill(TICKET);
    await form.getByRole("button", { name: "Request access", exact: true }).click();
    await ap.waitForURL(/\/requests\/[^/?]+(\?.*)?$/);
    const status = await text(ap.locator("[data-testid=request-status]"));
    check(status === "pending", `request status is "${status}", want "pending"`);
    const notice = await text(ap.getByRole("status"));
    check(notice.includes("Your request was sent to its approvers."), `notice is "${notice}"`);
    requestID = new URL(ap.url()).pathname.split("/").pop();
    check(/^[0-9A-Za-z]+$/.test(requestID), `no request id in ${ap.url()}`);
    return [await screenshot(ap, "alice-request-pending")];
  });

  const bob = await user("bob");
  const bp = await bob.newPage();

  await step(3, "bob's mail links to the request; the link asks him to sign in", async () => {
    const want = `${BASE}/requests/${requestID}`;
    let msgs = [];
    for (let i = 0; i < 50; i++) { // mail is sent as the request is filed; allow for a slow machine
      const resp = await fetch(`${BASE}/dev/outbox?ref=${encodeURIComponent(requestID)}`);
      check(resp.ok, `GET /dev/outbox: HTTP ${resp.status}`);
      msgs = (await resp.json()).messages ?? [];
      if (msgs.some((m) => (m.to ?? []).some((t) => t.includes("bob@example.com")))) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const mail = msgs.find((m) => (m.to ?? []).some((t) => t.includes("bob@example.com")) && (m.text ?? "").includes(want));
    check(mail, `no mail to bob@example.com containing ${want}; outbox for ${requestID}: ${JSON.stringify(msgs.map((m) => ({ to: m.to, kind: m.kind, subject: m.subject })))}`);
    check(!(mail.text + (mail.html ?? "")).includes(PASSWORD), "the approval mail holds the secret's value");
    mailLink = (mail.text.match(/https?:\/\/\S+/g) ?? []).find((u) => u.startsWith(want));
    check(mailLink, `no link starting with ${want} in the mail:\n${mail.text}`);
    console.log(`  mail "${mail.subject}" (${mail.kind}) links to ${mailLink}`);
    current = bp;
    await bp.goto(mailLink);
    await bp.getByRole("heading", { name: "Escrow dev sign-in", exact: true }).waitFor();
    return [await screenshot(bp, "bob-mail-link-sign-in")];
  });

  await step(4, "bob signs in, sees what he decides on, and approves", async () => {
    await signIn(bp, "Bob");
    await bp.waitForURL(mailLink);
    const main = bp.locator("main");
    const requester = await text(main.locator("dt:text-is('Requester') + dd"));
    check(requester.startsWith("alice"), `requester is "${requester}", want alice`);
    const h1 = await text(bp.getByRole("heading", { level: 1 }));
    check(h1.includes("alice") && h1.includes(SECRET_PATH), `heading "${h1}" does not name alice and ${SECRET_PATH}`);
    const comment = await text(bp.locator("[data-testid=request-comment]"));
    check(comment === REQUEST_COMMENT, `comment is "${comment}", want "${REQUEST_COMMENT}"`);
    const ticket = await text(main.locator("dt:text-is('Ticket') + dd"));
    check(ticket.includes(TICKET) && ticket.includes(TICKET_SUMMARY) && ticket.includes("validated"),
      `ticket shows "${ticket}", want ${TICKET}, "${TICKET_SUMMARY}" and validated`);
    const approve = bp.getByRole("button", { name: "Approve", exact: true });
    const deny = bp.getByRole("button", { name: "Deny", exact: true });
    check(await approve.isVisible(), "no Approve button");
    check(await deny.isVisible(), "no Deny button");
    const before = await screenshot(bp, "bob-request-to-decide");
    await bp.getByLabel(/^Comment/).fill(`${TICKET} is implementing; approved for the migration.`);
    await approve.click();
    await bp.waitForURL(/\?done=approved$/);
    const notice = await text(bp.getByRole("status"));
    check(notice.includes("You approved this request."), `notice is "${notice}"`);
    const status = await text(bp.locator("[data-testid=request-status]"));
    check(status === "approved" || status === "active", `status after approval is "${status}", want approved or active`);
    return [before, await screenshot(bp, "bob-approved")];
  });

  await step(5, "alice reveals the value", async () => {
    current = ap;
    await ap.goto(secretURL);
    const reveal = ap.locator("[data-testid=reveal-button]");
    check((await reveal.count()) === 1, "alice has no Reveal button after bob approved");
    const reason = ap.getByLabel(/^Reason for this reveal/);
    if ((await reason.count()) > 0) await reason.fill(REQUEST_COMMENT);
    await reveal.click();
    const shown = ap.locator("[data-testid=revealed]");
    await shown.waitFor();
    check((await text(shown)).includes(PASSWORD), "[data-testid=revealed] does not show the secret's password");
    return [await screenshot(ap, "alice-revealed")];
  });

  const auditor = await user("auditor");
  const up = await auditor.newPage();

  await step(6, "the auditor finds the request, the decision and the reveal by ticket, and downloads the CSV", async () => {
    current = up;
    await up.goto(`${BASE}/audit`);
    await signIn(up, "Auditor");
    await up.waitForURL(`${BASE}/audit`);
    await up.getByLabel("Ticket", { exact: true }).fill(TICKET);
    await up.getByRole("button", { name: "Search", exact: true }).click();
    await up.waitForURL(/\/audit\?.*ticket=/);
    const table = up.locator("[data-testid=audit-results]");
    await table.waitFor();
    const rows = await table.locator("tbody tr").evaluateAll((trs) => trs.map((tr) => ({
      user: tr.querySelector("[data-label=User]")?.textContent.trim(),
      action: tr.querySelector("[data-label=Action]")?.textContent.trim(),
      outcome: tr.querySelector("[data-label=Outcome]")?.textContent.trim(),
      ticket: tr.querySelector("[data-label=Ticket]")?.textContent.trim(),
    })));
    const has = (what, f) => check(rows.some(f), `no audit row for ${what}; rows: ${JSON.stringify(rows)}`);
    has("alice's request", (r) => r.user === "alice" && r.action.includes("request"));
    has("bob's decision", (r) => r.user === "bob" && /approve|decision|decide/.test(r.action));
    has("alice's secret.reveal", (r) => r.user === "alice" && r.action === "secret.reveal");
    const shots = [await screenshot(up, "auditor-audit-results")];

    const link = up.getByRole("link", { name: "Download CSV", exact: true });
    const [download] = await Promise.all([up.waitForEvent("download"), link.click()]);
    const failure = await download.failure();
    check(failure === null, `the CSV download failed: ${failure}`);
    const file = path.join(ARTIFACTS, download.suggestedFilename() || "audit.csv");
    await download.saveAs(file);
    const csv = await readFile(file, "utf8");
    const lines = csv.split(/\r?\n/).filter((l) => l !== "");
    check(lines.length >= 2 && lines[0].includes(","), `the CSV has no header line and rows:\n${csv.slice(0, 500)}`);
    check(!lines[0].includes(TICKET), `the CSV's first line is not a header: ${lines[0]}`);
    check(csv.includes(TICKET), `the CSV does not mention ${TICKET}`);
    check(csv.includes("secret.reveal"), "the CSV has no secret.reveal row");
    console.log(`  CSV ${path.basename(file)}: ${lines.length - 1} rows; header: ${lines[0]}`);
    return shots;
  });

  await step(7, "alice's requests fit a phone's width", async () => {
    const phone = await alice.newPage();
    current = phone;
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(`${BASE}/requests`);
    await phone.getByRole("link", { name: SECRET_PATH }).first().waitFor();
    const shots = [await screenshot(phone, "alice-requests-phone")];
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 391, `the page is ${width}px wide on a 390px screen (horizontal scrolling)`);
    await phone.close();
    return shots;
  });

  await step(8, "the first Tab on the secret page reaches Skip to content", async () => {
    current = ap;
    await ap.goto(secretURL);
    check(!(await ap.content()).includes(PASSWORD), "the secret's value is still on the page after leaving the reveal's answer");
    await ap.keyboard.press("Tab");
    const focused = await ap.evaluate(() => {
      const el = document.activeElement;
      return { tag: el?.tagName, text: el?.textContent?.trim(), href: el?.getAttribute("href") };
    });
    check(focused.tag === "A" && focused.text === "Skip to content",
      `the first Tab focuses ${JSON.stringify(focused)}, want the "Skip to content" link`);
    check(await ap.getByRole("link", { name: "Skip to content" }).isVisible(), "the focused skip link is not visible");
    return [await screenshot(ap, "alice-skip-link-focused")];
  });
}

let failed = false;
try {
  await run();
  stepNow = 0;
  current = null; // no page to show: every step passed
  check(problems.length === 0, `every step passed, but the browser reported errors:\n  ${problems.join("\n  ")}`);
  console.log("PASS: every step, and no browser error");
} catch (e) {
  failed = true;
  const why = e instanceof CheckFailed ? e.message : (e.stack ?? String(e));
  console.error(`FAIL: ${stepNow ? `step ${stepNow}: ` : ""}${why}`);
  if (problems.length > 0 && !why.includes(problems[0])) {
    console.error(`  the browser also reported:\n  ${problems.join("\n  ")}`);
  }
  if (current && !current.isClosed()) {
    try {
      const file = path.join(ARTIFACTS, "failure.png");
      await current.screenshot({ path: file, fullPage: true });
      await writeFile(path.join(ARTIFACTS, "failure.html"), await current.content());
      console.error(`  the page (${current.url()}) is in ${file} and failure.html`);
    } catch (e2) {
      console.error(`  (no screenshot of the failure: ${e2.message})`);
    }
  }
} finally {
  for (const ctx of Object.values(contexts)) await ctx.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
}
process.exit(failed ? 1 : 0);
