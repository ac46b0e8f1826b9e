"""Screenshot of the dashboard during the demo's rollback scenario, for the README.

Runs the demo's second scenario (a canary that turns slow and failing once it takes
traffic) with a dashboard over its state directory, opens the rollout's page in Debian's
headless Chromium (as an operator, so the actions show) and saves a screenshot once the
rollback is done: ``python hack/dashboard_screenshot.py [docs/dashboard-rollback.png]``.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from meshctl.localmesh.mesh import SampleApp
from meshctl.ops.demo import run_scenario
from meshctl.ops.rollouts import LocalRollouts
from meshctl.web.dashboard import Dashboard, server


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="meshctl-shot-") as tmp:
        state = Path(tmp)
        httpd = server(Dashboard(LocalRollouts(state), "shot", "demo"))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        scenario = threading.Thread(target=run_scenario, args=(
            "slo-breach", "rolled_back", SampleApp("v3", latency_ms=5.0), lambda d: None,
            lambda e: None, state), kwargs={"fault_at_step": 1, "fault_delay": 4.0,
                                            "fault": {"latency_ms": 85.0, "error_rate": 0.05}})
        scenario.start()
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--window-size=1100,1500"):
            options.add_argument(arg)
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            while not list(state.glob("*.status.json")):
                time.sleep(0.2)
            browser.get(f"{url}/login?token=shot")
            browser.get(f"{url}/rollouts/demo/slo-breach")
            scenario.join(timeout=240)
            time.sleep(2.5)  # two polls: the page shows the end
            phase = browser.find_element(By.CSS_SELECTOR, "td[data-field='Phase']").text
            browser.save_screenshot(str(out))
            print(f"{out}: the page shows {phase}")
        finally:
            browser.quit()
            httpd.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard-rollback.png"))
