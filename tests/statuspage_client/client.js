// Reads a tocsin page through a real Statuspage public API v2 client (statuspage.io on npm)
// and prints what the client parsed, as JSON, for tests/status_page.rs to check.
const { Statuspage } = require("statuspage.io");

async function main() {
  const page = new Statuspage("tocsin");
  page.setApiUrl(process.argv[2]);
  const summary = await page.api.getSummary();
  const status = await page.api.getStatus();
  const components = await page.api.getComponents();
  const incidents = await page.api.incidents.getAll();
  const unresolved = await page.api.incidents.getUnresolved();
  const maintenances = await page.api.scheduledMaintenances.getAll();
  const upcoming = await page.api.scheduledMaintenances.getUpcoming();
  console.log(JSON.stringify({
    page: summary.page.name,
    indicator: status.status.indicator,
    description: status.status.description,
    components: components.components.map((c) => [c.id, c.status]),
    incidents: incidents.incidents.map((i) => [i.name, i.status, i.impact]),
    unresolved: unresolved.incidents.length,
    maintenances: maintenances.scheduled_maintenances.map((m) => [m.name, m.status]),
    upcoming: upcoming.scheduled_maintenances.length,
  }));
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
