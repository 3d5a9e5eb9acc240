/* Workload Identity Portal: progressive enhancement only. Every page works without this file;
   with it, the request form checks policy as you type, the request page follows provisioning
   live, and values copy to the clipboard. HTML fragments come from the server's own templates
   (escaped there); text from JSON is always inserted as text. */
(function () {
  "use strict";

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      var args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  function csrfToken(scope) {
    var input = (scope || document).querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function announce(text) {
    var region = document.getElementById("live-announcer");
    if (region) { region.textContent = text; }
  }

  /* A form's CSRF token is masked afresh on every render: it is not a change of the region. */
  function comparable(html) {
    return html.replace(/(name="csrfmiddlewaretoken" value=")[^"]*"/g, '$1"');
  }

  /* Make `from` (in the page) look like `to` (parsed from the server) changing only what
     differs, so the element that has keyboard focus, an opened <details> and a chosen tab stay
     as they are (a wholesale innerHTML rewrite drops focus to <body>). */
  function syncAttributes(from, to) {
    Array.prototype.slice.call(from.attributes).forEach(function (attribute) {
      /* "open" is the reader's choice on a <details>, not the server's. */
      if (!to.hasAttribute(attribute.name) && !(attribute.name === "open" && from.tagName === "DETAILS")) {
        from.removeAttribute(attribute.name);
      }
    });
    Array.prototype.slice.call(to.attributes).forEach(function (attribute) {
      if (from.getAttribute(attribute.name) !== attribute.value) {
        from.setAttribute(attribute.name, attribute.value);
      }
    });
  }

  function sameKind(a, b) {
    if (a.nodeType !== b.nodeType) { return false; }
    if (a.nodeType !== 1) { return true; }
    return a.tagName === b.tagName && (a.id || "") === (b.id || "");
  }

  function morphChildren(from, to) {
    var a = from.firstChild;
    var b = to.firstChild;
    while (b) {
      var nextB = b.nextSibling;
      if (!a) {
        from.appendChild(b);
      } else {
        var nextA = a.nextSibling;
        if (sameKind(a, b)) {
          if (a.nodeType === 1) {
            syncAttributes(a, b);
            morphChildren(a, b);
          } else if (a.nodeValue !== b.nodeValue) {
            a.nodeValue = b.nodeValue;
          }
        } else {
          from.replaceChild(b, a);
        }
        a = nextA;
      }
      b = nextB;
    }
    while (a) {
      var next = a.nextSibling;
      from.removeChild(a);
      a = next;
    }
  }

  /* Update a region to the server's new rendering, unless nothing changed or the person is
     typing inside it right now. */
  function swapRegion(id, html, lastHtml) {
    var region = document.getElementById(id);
    if (!region || html === undefined) { return; }
    var key = comparable(html);
    if (lastHtml[id] === key) { return; }
    var active = document.activeElement;
    if (active && region.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
      return;
    }
    var incoming = document.createElement(region.tagName);
    incoming.innerHTML = html;
    morphChildren(region, incoming);
    lastHtml[id] = key;
  }

  /* --- copy to clipboard ----------------------------------------------------------------- */
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target) { return; }
    var text = target.textContent;
    var status = button.parentElement.querySelector(".copy-status");
    function done(ok) {
      var message = ok ? "Copied" : "Select and copy";
      if (status) { status.textContent = message; setTimeout(function () { status.textContent = ""; }, 2500); }
      announce(ok ? "Copied to the clipboard." : "Copy failed; select the text and copy it.");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
    } else {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "absolute";
      area.style.left = "-9999px";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      done(ok);
    }
  });

  /* --- new request form: live policy check and preview ------------------------------------ */
  function setupRequestForm(form) {
    var checkUrl = form.getAttribute("data-check-url");
    var lastHtml = {};
    /* Findings show on a control once it was touched (or on every control after a submit), so
       a fresh form is not covered in "required" before anyone typed. The panel lists them all. */
    var touched = {};
    var showAll = form.getAttribute("data-bound") === "true";
    var pending = null;
    var sequence = 0;

    function clearFieldFeedback() {
      form.querySelectorAll(".field-feedback[data-live]").forEach(function (box) {
        box.innerHTML = "";
      });
      form.querySelectorAll("[aria-invalid]").forEach(function (control) {
        control.removeAttribute("aria-invalid");
      });
    }

    function feedbackBox(targetId) {
      var control = document.getElementById(targetId);
      if (!control) { return null; }
      var boxId = targetId + "-feedback";
      var box = document.getElementById(boxId);
      if (!box) {
        box = document.createElement("ul");
        box.id = boxId;
        box.className = "findings field-feedback";
        control.insertAdjacentElement("afterend", box);
      }
      box.setAttribute("data-live", "");
      var described = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
      if (described.indexOf(boxId) < 0) { described.push(boxId); }
      control.setAttribute("aria-describedby", described.join(" "));
      return { control: control, box: box };
    }

    function addFinding(targetId, text, rule, blocking) {
      var place = feedbackBox(targetId);
      if (!place) { return; }
      var item = document.createElement("li");
      item.className = "finding " + (blocking ? "blocking" : "warning");
      if (rule) {
        var code = document.createElement("span");
        code.className = "rule";
        code.textContent = rule;
        item.appendChild(code);
        item.appendChild(document.createTextNode(" "));
      }
      item.appendChild(document.createTextNode(text));
      place.box.appendChild(item);
      if (blocking) { place.control.setAttribute("aria-invalid", "true"); }
    }

    function render(data) {
      clearFieldFeedback();
      (data.findings || []).forEach(function (finding) {
        if (finding.target && (showAll || touched[finding.target])) {
          addFinding(finding.target, finding.message, finding.rule, finding.blocking);
        }
      });
      Object.keys(data.form_errors || {}).forEach(function (targetId) {
        if (!(showAll || touched[targetId])) { return; }
        data.form_errors[targetId].forEach(function (message) { addFinding(targetId, message, "", true); });
      });
      Object.keys(data.html || {}).forEach(function (id) { swapRegion(id, data.html[id], lastHtml); });
      var blocking = (data.findings || []).filter(function (f) { return f.blocking; }).length;
      var warnings = (data.findings || []).length - blocking;
      form.setAttribute("data-policy-ok", data.ok ? "true" : "false");
      announce(data.ok
        ? "Policy check passed" + (warnings ? " with " + warnings + " warning(s)." : ".")
        : blocking + " problem(s) block this request.");
    }

    var check = debounce(function () {
      var mine = ++sequence;
      if (pending) { pending.abort(); }
      pending = new AbortController();
      form.setAttribute("aria-busy", "true");
      fetch(checkUrl, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRFToken": csrfToken(form), "Accept": "application/json" },
        credentials: "same-origin",
        signal: pending.signal
      })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (data && mine === sequence) { render(data); }
        })
        .catch(function () { /* offline or aborted: the server checks again on submit */ })
        .finally(function () { if (mine === sequence) { form.removeAttribute("aria-busy"); } });
    }, 300);

    function touch(event) {
      if (event.target && event.target.id) { touched[event.target.id] = true; }
      check();
    }
    form.addEventListener("input", touch);
    form.addEventListener("change", touch);

    /* Namespaces offered follow the chosen cluster (one datalist per cluster). */
    var cluster = form.querySelector("#id_cluster");
    var namespace = form.querySelector("#id_namespace");
    function followCluster() {
      if (cluster && namespace) { namespace.setAttribute("list", "namespaces-" + cluster.value); }
      var hint = document.getElementById("namespace-choices");
      var list = document.getElementById("namespaces-" + (cluster ? cluster.value : ""));
      if (hint) {
        var names = list ? Array.prototype.map.call(list.options, function (o) { return o.value; }) : [];
        hint.textContent = names.length
          ? "Your team owns: " + names.join(", ") + "."
          : (cluster && cluster.value ? "Your team owns no namespace on this cluster." : "Choose a cluster first.");
      }
    }
    if (cluster) { cluster.addEventListener("change", followCluster); followCluster(); }

    /* Role descriptions under each role picker. */
    function describeRole(select) {
      var row = select.closest(".role-row");
      var text = row ? row.querySelector(".role-description") : null;
      if (!text) { return; }
      var option = select.options[select.selectedIndex];
      text.textContent = option ? (option.getAttribute("data-description") || "") : "";
    }
    form.addEventListener("change", function (event) {
      if (event.target.matches(".role-row select")) { describeRole(event.target); }
    });
    form.querySelectorAll(".role-row select").forEach(describeRole);

    setupResourceFinders(form, function (scope) {
      touched[scope.id] = true;
    });
    /* "Add a role" clones the empty row instead of a round trip. */
    var addButton = form.querySelector("[name=add_role]");
    var template = document.getElementById("role-row-template");
    var total = form.querySelector("[name=roles-TOTAL_FORMS]");
    var rows = document.getElementById("role-rows");
    if (addButton && template && total && rows) {
      addButton.addEventListener("click", function (event) {
        event.preventDefault();
        var index = parseInt(total.value, 10) || 0;
        if (index >= 20) { return; }
        var html = template.innerHTML.replace(/__prefix__/g, String(index)).replace(/__number__/g, String(index + 1));
        rows.insertAdjacentHTML("beforeend", html);
        total.value = String(index + 1);
        form.dispatchEvent(new CustomEvent("role-row-added", { detail: rows.lastElementChild }));
        var select = rows.lastElementChild.querySelector("select");
        if (select) { select.focus(); }
      });
    }

    if (showAll) { check(); }
  }

  /* --- the resource finder: a type-ahead combobox on each role row ------------------------- */
  /* WAI-ARIA APG "Editable Combobox With List Autocomplete": the input keeps focus; the
     listbox's options are pointed at with aria-activedescendant; Down/Up move, Enter picks,
     Escape closes (or clears when closed). The server searches (GET /api/v1/resources/ with the
     session: at most 25 of the team's resources of the role's types whose name or id contains
     the text); a pick fills the row's scope input, which stays the field that is posted. */
  var FINDER_LIMIT = 25;

  function setupResourceFinders(form, onPick) {
    var url = form.getAttribute("data-resources-url");
    if (!url || !window.fetch) { return; }
    var hint = form.querySelector(".resource-finder-hint");
    if (hint) { hint.hidden = false; }
    form.querySelectorAll(".role-row").forEach(function (row) { setupFinder(form, row, url, onPick); });
    form.addEventListener("role-row-added", function (event) {
      setupFinder(form, event.detail, url, onPick);
    });
  }

  function setupFinder(form, row, url, onPick) {
    var box = row.querySelector(".resource-finder");
    var input = row.querySelector(".resource-finder-input");
    var list = row.querySelector(".resource-finder-list");
    var status = row.querySelector(".resource-finder-status");
    var scope = row.querySelector("input[name$='-scope']");
    var role = row.querySelector("select[name$='-role']");
    if (!box || !input || !list || !scope) { return; }
    box.hidden = false;
    var options = [];
    var active = -1;
    var pending = null;
    var sequence = 0;

    function setOpen(open) {
      list.hidden = !open;
      input.setAttribute("aria-expanded", open ? "true" : "false");
      if (!open) { setActive(-1); }
    }

    function setActive(index) {
      options.forEach(function (option, n) {
        option.element.setAttribute("aria-selected", n === index ? "true" : "false");
        option.element.classList.toggle("active", n === index);
      });
      active = index;
      if (index >= 0 && options[index]) {
        input.setAttribute("aria-activedescendant", options[index].element.id);
        options[index].element.scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    function typeLabel(type) {
      return type.toLowerCase() === "microsoft.resources/subscriptions/resourcegroups"
        ? "the whole resource group" : type.split("/").pop();
    }

    /* Options grouped by subscription and resource group (the server's order), as text. */
    function show(data) {
      list.textContent = "";
      options = [];
      var groups = {};
      (data.results || []).forEach(function (resource) {
        var key = resource.subscription_id + "/" + resource.resource_group;
        var group = groups[key];
        if (!group) {
          group = document.createElement("div");
          group.setAttribute("role", "group");
          group.setAttribute("aria-label", resource.resource_group + " in subscription " + resource.subscription_id);
          var heading = document.createElement("div");
          heading.className = "resource-finder-group";
          heading.setAttribute("aria-hidden", "true");
          heading.textContent = resource.resource_group + " · " + resource.subscription_id;
          group.appendChild(heading);
          list.appendChild(group);
          groups[key] = group;
        }
        var element = document.createElement("div");
        element.setAttribute("role", "option");
        element.id = input.id + "-option-" + options.length;
        element.setAttribute("aria-selected", "false");
        element.className = "resource-finder-option";
        var name = document.createElement("span");
        name.textContent = resource.name;
        var kind = document.createElement("span");
        kind.className = "muted";
        kind.textContent = " (" + typeLabel(resource.type) + (resource.owned_by === "tag" ? ", tagged for " + resource.team : "") + ")";
        element.appendChild(name);
        element.appendChild(kind);
        group.appendChild(element);
        options.push({ element: element, resource: resource });
      });
      var count = data.count || 0;
      var more = count - options.length;
      status.textContent = !count ? "No resources of your teams match."
        : count + " match" + (count === 1 ? "" : "es") + (more > 0 ? "; " + more + " more: type more to narrow." : ".");
      setOpen(options.length > 0);
    }

    function pick(index) {
      var option = options[index];
      if (!option) { return; }
      scope.value = option.resource.id;
      input.value = option.resource.name;
      setOpen(false);
      status.textContent = "Scope set to " + option.resource.name + ".";
      onPick(scope);
      /* The live policy check follows the scope as if it had been typed. */
      scope.dispatchEvent(new Event("input", { bubbles: true }));
      announce("Scope of the role set to " + option.resource.name + ".");
    }

    var search = debounce(function () {
      var mine = ++sequence;
      var text = input.value.trim();
      if (pending) { pending.abort(); }
      pending = new AbortController();
      var query = new URLSearchParams({ q: text, limit: String(FINDER_LIMIT) });
      var team = form.querySelector("[name=team]");
      if (team && team.value) { query.set("team", team.value); }
      if (role && role.value) { query.set("role", role.value); }
      input.setAttribute("aria-busy", "true");
      fetch(url + "?" + query.toString(), {
        headers: { "Accept": "application/json" }, credentials: "same-origin", signal: pending.signal
      })
        .then(function (response) {
          if (response.status === 503) { throw new Error("unavailable"); }
          if (!response.ok) { throw new Error(String(response.status)); }
          return response.json();
        })
        .then(function (data) { if (mine === sequence) { show(data); } })
        .catch(function (error) {
          if (mine !== sequence || error.name === "AbortError") { return; }
          list.textContent = "";
          options = [];
          setOpen(false);
          status.textContent = error.message === "unavailable"
            ? "Azure could not be asked right now; type the resource id or paste its portal URL."
            : "The search failed; type the resource id or paste its portal URL.";
        })
        .finally(function () { if (mine === sequence) { input.removeAttribute("aria-busy"); } });
    }, 250);

    /* The finder is not a field of the request: no policy check for its keystrokes. */
    input.addEventListener("input", function (event) {
      event.stopPropagation();
      search();
    });
    input.addEventListener("change", function (event) { event.stopPropagation(); });
    input.addEventListener("keydown", function (event) {
      var open = !list.hidden;
      if (event.key === "ArrowDown") {
        event.preventDefault();
        if (!open) { if (options.length) { setOpen(true); setActive(0); } else { search(); } return; }
        setActive(Math.min(options.length - 1, active + 1));
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        if (open) { setActive(Math.max(0, active - 1)); }
      } else if (event.key === "Enter") {
        if (open && active >= 0) {
          event.preventDefault();  /* a pick, not a submit of the form */
          pick(active);
        }
      } else if (event.key === "Escape") {
        if (open) { event.preventDefault(); setOpen(false); } else if (input.value) { input.value = ""; }
      }
    });
    list.addEventListener("mousedown", function (event) { event.preventDefault(); });  /* keep focus */
    list.addEventListener("click", function (event) {
      var element = event.target.closest("[role=option]");
      if (!element) { return; }
      pick(options.findIndex(function (option) { return option.element === element; }));
    });
    input.addEventListener("blur", function () { setOpen(false); });
    if (role) {
      role.addEventListener("change", function () {
        /* Other types fit another role: what was listed may no longer apply. */
        list.textContent = "";
        options = [];
        setOpen(false);
        if (input.value.trim()) { search(); }
      });
    }
  }

  /* --- request page: live provisioning progress ---------------------------------------------- */
  function setupLiveRequest(root) {
    var url = root.getAttribute("data-progress-url");
    var delay = parseInt(root.getAttribute("data-poll-ms"), 10) || 0;
    var lastHtml = {};
    var lastStatus = root.getAttribute("data-status");
    var failures = 0;
    var quiet = 0;
    if (!url || !delay) { return; }

    /* Each step's status as the page shows it, so every change is announced, not only the
       first and the last. */
    var lastSteps = {};
    root.querySelectorAll("tr[data-step]").forEach(function (row) {
      lastSteps[row.getAttribute("data-step")] = row.getAttribute("data-step-status");
    });

    function stepChanges(steps) {
      var said = [];
      (steps || []).forEach(function (step) {
        if (lastSteps[step.label] !== step.status) {
          lastSteps[step.label] = step.status;
          said.push(step.label + ": " + step.status + ".");
        }
      });
      return said;
    }

    function poll() {
      fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) { throw new Error(String(response.status)); }
          return response.json();
        })
        .then(function (data) {
          failures = 0;
          var changed = false;
          Object.keys(data.html || {}).forEach(function (id) {
            if (lastHtml[id] !== comparable(data.html[id])) { changed = true; }
            swapRegion(id, data.html[id], lastHtml);
          });
          var said = stepChanges(data.steps);
          if (data.status !== lastStatus) {
            lastStatus = data.status;
            root.setAttribute("data-status", data.status);
            said.push(data.summary);
          }
          if (said.length) { announce(said.join(" ")); }
          /* The server's pace while things move; slower and slower (to 30 s) while nothing
             does, so a tab left open on a pending request costs little. */
          quiet = changed ? 0 : quiet + 1;
          delay = data.poll_ms ? Math.min(30000, data.poll_ms * Math.pow(1.25, quiet)) : 0;
          if (delay) { setTimeout(poll, delay); }
        })
        .catch(function () {
          failures += 1;
          if (failures < 10) { setTimeout(poll, Math.min(30000, 2000 * failures)); }
        });
    }
    setTimeout(poll, delay);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-check-url]").forEach(setupRequestForm);
    document.querySelectorAll("[data-progress-url]").forEach(setupLiveRequest);
    /* Confirm destructive actions. */
    document.addEventListener("submit", function (event) {
      var message = event.target.getAttribute("data-confirm");
      if (message && !window.confirm(message)) { event.preventDefault(); }
    });
  });
})();
