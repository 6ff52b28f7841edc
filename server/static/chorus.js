// Progressive enhancement for the respondent pages. Every page works without
// this file: the unit field falls back to a datalist, the receipt can be
// selected and copied by hand. Nothing here talks to the network.
(function () {
  "use strict";

  var MAX_SHOWN = 50;

  function text(el, name, fallback) {
    return (el && el.getAttribute(name)) || fallback;
  }

  function format(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (_m, key) { return values[key]; });
  }

  // Rank: the unit's own name starting with the query, then any part of the
  // path starting with it, then anywhere; shallower units first, since a
  // larger group protects the respondent better.
  function score(unit, terms) {
    var total = 0;
    for (var i = 0; i < terms.length; i++) {
      var term = terms[i];
      var at = unit.lower.indexOf(term);
      if (at < 0) { return -1; }
      if (unit.leaf.indexOf(term) === 0) { total += 3; }
      else if (at === 0 || unit.lower.charAt(at - 1) === "/" || unit.lower.charAt(at - 1) === " ") {
        total += 2;
      } else { total += 1; }
    }
    return total;
  }

  function unitPicker(root) {
    var input = root.querySelector("input[list]");
    var datalist = input && document.getElementById(input.getAttribute("list"));
    if (!datalist) { return; }
    var units = [];
    var options = datalist.options;
    for (var i = 0; i < options.length; i++) {
      var path = options[i].value;
      var lower = path.toLowerCase();
      units.push({ path: path, lower: lower, leaf: lower.slice(lower.lastIndexOf("/") + 1),
                   depth: path.split("/").length });
    }
    var known = new Set(units.map(function (u) { return u.path; }));
    // The native datalist would open its own popup over ours.
    input.removeAttribute("list");

    var listbox = document.createElement("ul");
    listbox.id = input.id + "-options";
    listbox.className = "unit-options";
    listbox.setAttribute("role", "listbox");
    listbox.setAttribute("aria-label", text(root, "data-list-label", "Matching units"));
    listbox.hidden = true;
    var status = document.createElement("p");
    status.className = "help unit-status";
    status.setAttribute("role", "status");
    var coarser = document.createElement("div");
    coarser.className = "unit-coarser";
    coarser.hidden = true;
    input.insertAdjacentElement("afterend", listbox);
    listbox.insertAdjacentElement("afterend", status);
    status.insertAdjacentElement("afterend", coarser);

    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", listbox.id);

    var shown = [];
    var active = -1;

    function close() {
      listbox.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
    }

    function setActive(index) {
      var items = listbox.children;
      if (active >= 0 && items[active]) { items[active].setAttribute("aria-selected", "false"); }
      active = index;
      if (active >= 0 && items[active]) {
        items[active].setAttribute("aria-selected", "true");
        input.setAttribute("aria-activedescendant", items[active].id);
        items[active].scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    function showCoarser(path) {
      coarser.textContent = "";
      var parts = path.split("/");
      if (!known.has(path) || parts.length < 2) { coarser.hidden = true; return; }
      var intro = document.createElement("p");
      intro.className = "help";
      intro.textContent = text(root, "data-coarser-label",
                               "Or name a larger group, which protects you better:");
      coarser.appendChild(intro);
      for (var depth = parts.length - 1; depth >= 1; depth--) {
        var ancestor = parts.slice(0, depth).join("/");
        if (!known.has(ancestor)) { continue; }
        var button = document.createElement("button");
        button.type = "button";
        button.className = "secondary small";
        button.textContent = ancestor.split("/").join(" / ");
        button.setAttribute("data-path", ancestor);
        coarser.appendChild(button);
      }
      coarser.hidden = coarser.children.length < 2;
    }

    function choose(path) {
      input.value = path;
      close();
      status.textContent = format(text(root, "data-chosen", "Chosen: %(unit)s"), { unit: path });
      showCoarser(path);
    }

    function render() {
      var query = input.value.trim().toLowerCase();
      listbox.textContent = "";
      active = -1;
      coarser.hidden = known.has(input.value.trim()) ? coarser.hidden : true;
      if (!query) { close(); status.textContent = ""; return; }
      var terms = query.split(/\s+/);
      var matches = [];
      for (var i = 0; i < units.length; i++) {
        var s = score(units[i], terms);
        if (s >= 0) { matches.push({ unit: units[i], score: s }); }
      }
      matches.sort(function (a, b) {
        return b.score - a.score || a.unit.depth - b.unit.depth ||
          (a.unit.path < b.unit.path ? -1 : 1);
      });
      shown = matches.slice(0, MAX_SHOWN).map(function (m) { return m.unit.path; });
      shown.forEach(function (path, index) {
        var item = document.createElement("li");
        item.id = listbox.id + "-" + index;
        item.setAttribute("role", "option");
        item.setAttribute("aria-selected", "false");
        item.setAttribute("data-path", path);
        var parts = path.split("/");
        if (parts.length > 1) {
          var trail = document.createElement("span");
          trail.className = "trail";
          trail.textContent = parts.slice(0, -1).join(" / ") + " / ";
          item.appendChild(trail);
        }
        var leaf = document.createElement("span");
        leaf.className = "leaf";
        leaf.textContent = parts[parts.length - 1];
        item.appendChild(leaf);
        listbox.appendChild(item);
      });
      if (!matches.length) {
        status.textContent = text(root, "data-none", "No unit matches. Try a shorter or different word.");
      } else if (matches.length > MAX_SHOWN) {
        status.textContent = format(text(root, "data-many", "%(n)s units match; keep typing to narrow them down."),
                                    { n: matches.length });
      } else {
        status.textContent = format(text(root, "data-some", "%(n)s matching units."),
                                    { n: matches.length });
      }
      listbox.hidden = !matches.length;
      input.setAttribute("aria-expanded", matches.length ? "true" : "false");
    }

    input.addEventListener("input", render);
    input.addEventListener("keydown", function (event) {
      var open = !listbox.hidden;
      if (event.key === "ArrowDown") {
        if (!open) { render(); }
        if (shown.length) { setActive(Math.min(active + 1, shown.length - 1)); }
        event.preventDefault();
      } else if (event.key === "ArrowUp" && open) {
        setActive(Math.max(active - 1, 0));
        event.preventDefault();
      } else if (event.key === "Enter" && open && active >= 0) {
        choose(shown[active]);
        event.preventDefault();
      } else if (event.key === "Escape" && open) {
        close();
        event.preventDefault();
      }
    });
    // mousedown, not click: it fires before the input loses focus.
    listbox.addEventListener("mousedown", function (event) {
      var item = event.target.closest("[role=option]");
      if (item) { event.preventDefault(); choose(item.getAttribute("data-path")); }
    });
    coarser.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-path]");
      if (button) { choose(button.getAttribute("data-path")); input.focus(); }
    });
    input.addEventListener("blur", function () { window.setTimeout(close, 150); });
    if (known.has(input.value.trim())) { showCoarser(input.value.trim()); }
  }

  function counter(textarea) {
    var out = document.getElementById(textarea.getAttribute("data-counter"));
    if (!out) { return; }
    var max = parseInt(textarea.getAttribute("maxlength"), 10);
    var template = text(textarea, "data-left", "%(n)s characters left.");
    function update() { out.textContent = format(template, { n: max - textarea.value.length }); }
    textarea.addEventListener("input", update);
    update();
  }

  function copyButton(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    var status = document.getElementById(button.getAttribute("data-copy-status") || "copy-status");
    if (!source) { return; }
    button.hidden = false;
    function say(message) { if (status) { status.textContent = message; } }
    function selectSource() {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    button.addEventListener("click", function () {
      var value = source.textContent.trim();
      var copied = button.getAttribute("data-copied");
      var failed = button.getAttribute("data-copy-failed");
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(value).then(function () { say(copied); },
          function () { selectSource(); say(failed); });
      } else {
        selectSource();
        say(document.execCommand && document.execCommand("copy") ? copied : failed);
      }
    });
  }

  // A second click would cancel the first page load: its answer, the one
  // page that shows the receipt, would be lost and the second answer would
  // only say the report was already received.
  function submitOnce(form) {
    form.addEventListener("submit", function (event) {
      if (form.getAttribute("data-sending")) { event.preventDefault(); return; }
      form.setAttribute("data-sending", "true");
    });
    // A page restored from the back/forward cache may be sent again.
    window.addEventListener("pageshow", function () { form.removeAttribute("data-sending"); });
  }

  document.querySelectorAll("[data-unit-picker]").forEach(unitPicker);
  document.querySelectorAll("form[data-submit-once]").forEach(submitOnce);
  document.querySelectorAll("textarea[data-counter]").forEach(counter);
  document.querySelectorAll("button[data-copy]").forEach(copyButton);

  // After a refused submit the page comes back from the top: bring the first error into
  // view and give it focus, so a screen reader reads it and nobody has to look for it.
  var refusal = document.querySelector(".errors.summary");
  if (refusal) {
    refusal.setAttribute("tabindex", "-1");
    refusal.focus();
  }

  // A verified survey's receipt: the membership token this browser kept is spent.
  var spent = document.querySelector("[data-token-spent]");
  if (spent) {
    try { window.localStorage.removeItem("chorus-token:" + spent.getAttribute("data-token-spent")); }
    catch (ignored) { /* storage refused: nothing was kept */ }
  }
}());
