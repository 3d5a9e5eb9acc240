"""axe-core (npm) run by Playwright on every page the browser tests visit.

axe-core is installed on first use into var/ (`npm install --prefix`, the pinned version below;
var/ is git-ignored, nothing is committed and no CDN is asked). Every browser context the tests
open gets it as an init script (Playwright's `add_init_script`, which the page's CSP does not
govern, so the portal's real policy stays on): when a page has loaded, axe checks it and reports
back through an exposed binding. When the test ends, each page still open is checked once more
(its final state), and any serious or critical violation fails the test, naming the page, the
rule and the elements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.support.npm import npm_install
from tests.support.services import REPO_ROOT

AXE_CORE_VERSION = "4.14.1"
FAILING_IMPACTS = frozenset({"serious", "critical"})
# Django's own admin (its templates and widgets: a split date-time field without labels, an
# aria-label on a <span>) is Django's to fix, and its pages carry no CSP nonce for axe's own
# <style>: axe skips them. The portal's pages, the API docs and the error pages are all checked.
NOT_OURS = ("/admin/",)

# axe adds a <style> element of its own while it runs; under the portal's CSP it carries the
# page's nonce (read from the element that has one), so checking a page is not itself a
# violation of the policy the CSP test holds every page to.
_WITH_NONCE = """
window.__axeRun = function () {
  const carrier = document.querySelector('[nonce]');
  const nonce = carrier ? carrier.nonce : '';
  const create = document.createElement;
  document.createElement = function (tag, options) {
    const element = create.call(document, tag, options);
    if (nonce && String(tag).toLowerCase() === 'style') { element.nonce = nonce; }
    return element;
  };
  return window.axe.run(document, {resultTypes: ['violations']})
    .finally(() => { document.createElement = create; });
};
"""
# Runs in the page's top frame once it has loaded; reports through window.__axeReport.
_RUN_ON_LOAD = """
(() => {
  if (window.top !== window || location.protocol === 'about:') return;
  if (NOT_OURS.some(prefix => location.pathname.startsWith(prefix))) return;
  window.addEventListener('load', () => {
    window.__axeRun()
      .then(results => window.__axeReport(location.pathname + location.search,
                                           JSON.stringify(results.violations)))
      .catch(() => {});
  });
})();
"""
_RUN_ON_LOAD = _RUN_ON_LOAD.replace("NOT_OURS", json.dumps(NOT_OURS))
_RUN_NOW = """async () => JSON.stringify((await window.__axeRun()).violations)"""


def axe_source() -> str:
    """axe.min.js of the pinned version, installed from npm into var/ when missing."""
    prefix = REPO_ROOT / "var" / f"axe-core-{AXE_CORE_VERSION}"
    script = npm_install(
        f"axe-core@{AXE_CORE_VERSION}",
        prefix,
        prefix / "node_modules" / "axe-core" / "axe.min.js",
        options=("--no-save",),
    )
    return script.read_text(encoding="utf-8")


@dataclass
class AxeReport:
    """Every page checked in one test and the serious or critical violations found."""

    pages: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, url: str, violations_json: str) -> None:
        if url.startswith(NOT_OURS):
            return
        self.pages.append(url)
        for violation in json.loads(violations_json):
            if violation.get("impact") not in FAILING_IMPACTS:
                continue
            targets = [" ".join(map(str, node.get("target", []))) for node in violation["nodes"]]
            problem = (
                f"{url}: {violation['impact']} {violation['id']} ({violation['help']}) "
                f"at {targets[:5]}"
            )
            if problem not in self.problems:
                self.problems.append(problem)

    def check_now(self, page: Any) -> None:
        """Check `page` as it is now (the final state of a page the test leaves open)."""
        if page.is_closed() or page.url.startswith("about:"):
            return
        path = page.url.split("//", 1)[-1]
        path = path[path.find("/") :] if "/" in path else "/"
        if path.startswith(NOT_OURS):
            return
        try:
            violations = page.evaluate(_RUN_NOW)
        except Exception:  # a page mid-navigation or closed: its load was checked
            return
        self.add(path, violations)


def audit_context(context: Any, report: AxeReport, source: str) -> None:
    """Have axe check every page `context` loads, into `report`."""
    context.add_init_script(script=source)
    context.add_init_script(script=_WITH_NONCE)
    context.add_init_script(script=_RUN_ON_LOAD)
    context.expose_binding(
        "__axeReport", lambda _source, url, violations: report.add(url, violations)
    )


class AuditedBrowser:
    """A Playwright browser whose every new context is checked by axe (see the module doc)."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser
        self._source = axe_source()
        self._contexts: list[Any] = []
        self.report = AxeReport()

    def new_context(self, **kwargs: Any) -> Any:
        context = self._browser.new_context(**kwargs)
        # A context without JavaScript cannot run axe; its pages are the same HTML the
        # script-enabled contexts of the suite check.
        if kwargs.get("java_script_enabled", True):
            audit_context(context, self.report, self._source)
            self._contexts.append(context)
        return context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)

    def check_open_pages(self) -> None:
        """Check each page still open as it is now (before its context is closed)."""
        for context in self._contexts:
            try:
                pages = list(context.pages)
            except Exception:  # noqa: S112 (a context the test closed: nothing is open)
                continue
            for page in pages:
                self.report.check_now(page)
        self._contexts.clear()
