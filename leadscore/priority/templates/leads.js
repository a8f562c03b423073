(function () {
  "use strict";
  // The managers' page: the list a page at a time, and the sections' charts.
  // Served: pages come from config.api ("GET <api>/leads?page=&size=&owner=..."), the
  // sections from "<api>/sections" and A/B comparisons from "<api>/compare".
  // Static file (config.api null): the rows embedded in config.rows, paged here.
  var config = JSON.parse(document.getElementById("page-config").textContent);
  var t = config.words;
  var table = document.getElementById("leads");
  var body = table.tBodies[0];
  var state = { page: 1, sort: "rank", desc: false };
  var filters = Array.prototype.slice.call(document.querySelectorAll("[data-filter]"));
  var request = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== "") { node.setAttribute(k, attrs[k]); }
    });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function cell(tr, cls, text, sub, attrs) {
    var td = el("td", Object.assign({ "class": cls }, attrs || {}), text);
    if (sub) { td.appendChild(el("span", { "class": "sub" + (cls === "num win" ? " meaning" : "") }, sub)); }
    tr.appendChild(td);
    return td;
  }

  function row(r) {
    var tr = el("tr", { "data-owner": r.owner_id, "data-group": r.group, "data-deal": r.deal_id });
    cell(tr, "num", r.rank, null, { "data-v": r.rank });
    var deal = el("td", { "class": "deal" });
    // The timeline in the page's language, not the browser's: a reader who chose 中文 stays in it.
    deal.appendChild(el("a", { href: config.deal_base + encodeURIComponent(r.deal_id) + "?lang=" + config.lang }, r.deal_id));
    deal.appendChild(el("span", { "class": "sub" }, r.stage));
    tr.appendChild(deal);
    cell(tr, "account", r.account_id, r.segment_text + (r.industry_text ? " · " + r.industry_text : ""));
    cell(tr, "owner", r.owner_id);
    cell(tr, "group group-" + r.group.replace(/ /g, "-"), r.group_text);
    cell(tr, "num win", r.win, r.meaning, { "data-v": r.probability, title: r.model ? t.scored_by.replace("{model}", r.model) : "" });
    var grade = el("td");
    grade.appendChild(el("span", { "class": "grade grade-" + r.grade }, r.grade));
    tr.appendChild(grade);
    cell(tr, "num", r.amount_text, null, { "data-v": r.amount });
    cell(tr, "num", r.ev_text, null, { "data-v": r.expected_value });
    cell(tr, "num " + (r.change > 0 ? "up" : r.change < 0 ? "down" : ""), r.change_text, null, { "data-v": r.change });
    var spark = el("td");
    spark.appendChild(el("span", { "class": "spark", title: r.trend_text }, r.spark));
    tr.appendChild(spark);
    var why = el("td"), ul = el("ul", { "class": "reasons" });
    r.positive.forEach(function (x) { ul.appendChild(el("li", { "class": "pos", title: x.tooltip }, x.text)); });
    r.negative.forEach(function (x) { ul.appendChild(el("li", { "class": "neg", title: x.tooltip }, x.text)); });
    why.appendChild(ul);
    tr.appendChild(why);
    var flags = el("td", { "class": "flags" });
    r.flags.forEach(function (f) { flags.appendChild(el("span", { "class": "flag", "data-code": f.code }, f.text)); });
    tr.appendChild(flags);
    cell(tr, "next-step", r.next_step);
    return tr;
  }

  function show(data) {
    var rows = document.createDocumentFragment();
    data.rows.forEach(function (r) { rows.appendChild(row(r)); });
    body.replaceChildren(rows);
    if (!data.rows.length) {
      var tr = el("tr"), td = el("td", { colspan: "14", "class": "note" }, t.no_rows);
      tr.appendChild(td);
      body.appendChild(tr);
    }
    state.page = data.page;
    document.getElementById("shown-count").textContent = t.shown
      .replace("{matched}", data.matched.toLocaleString(config.locale))
      .replace("{total}", data.total.toLocaleString(config.locale))
      .replace("{page}", data.page).replace("{pages}", data.pages);
    document.getElementById("page-of").textContent = data.page + " / " + data.pages;
    document.getElementById("page-prev").disabled = data.page <= 1;
    document.getElementById("page-next").disabled = data.page >= data.pages;
    table.dataset.page = String(data.page);
  }

  function query() {
    var q = new URLSearchParams();
    q.set("page", state.page);
    q.set("size", config.size);
    q.set("lang", config.lang);
    filters.forEach(function (f) { if (f.value) { q.set(f.dataset.filter, f.value); } });
    if (state.sort !== "rank" || state.desc) { q.set("sort", state.sort); q.set("desc", state.desc ? "1" : "0"); }
    return q;
  }

  // The static file's rows, filtered and sorted here as the service does (one value per filter).
  function local() {
    var want = {};
    filters.forEach(function (f) { want[f.dataset.filter] = f.value; });
    var statuses = { open: ["active", "dormant"], active: ["active"], dormant: ["dormant"], lost: ["recently lost"] };
    var rows = config.rows.filter(function (r) {
      return (!want.owner || r.owner_id.toLowerCase() === want.owner.toLowerCase()) &&
        (!want.team || (config.teams[want.team] || []).indexOf(r.owner_id) >= 0) &&
        (!want.channel || r.channel === want.channel) &&
        (!want.segment || r.segment === want.segment || r.industry === want.segment.replace(/_/g, " ")) &&
        (!want.status || statuses[want.status].indexOf(r.group) >= 0) &&
        (!want.grade || r.grade === want.grade);
    });
    if (state.sort !== "rank" || state.desc) {
      var key = state.sort, sign = state.desc ? -1 : 1;
      rows = rows.slice().sort(function (a, b) {
        var x = a[key], y = b[key];
        if (x === null || y === null) { return (x === null) - (y === null); }
        return (x < y ? -1 : x > y ? 1 : 0) * sign;
      });
    }
    var pages = Math.max(1, Math.ceil(rows.length / config.size));
    var page = Math.min(state.page, pages);
    return { total: config.total, matched: rows.length, page: page, pages: pages,
             rows: rows.slice((page - 1) * config.size, page * config.size) };
  }

  function load() {
    if (!config.api) { show(local()); return; }
    var mine = ++request;
    table.setAttribute("aria-busy", "true");
    fetch(config.api + "/leads?" + query().toString(), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) { if (mine === request) { show(data); table.removeAttribute("aria-busy"); } });
  }

  filters.forEach(function (f) { f.addEventListener("change", function () { state.page = 1; load(); }); });
  document.getElementById("page-prev").addEventListener("click", function () { state.page -= 1; load(); });
  document.getElementById("page-next").addEventListener("click", function () { state.page += 1; load(); });
  table.tHead.addEventListener("click", function (event) {
    var th = event.target.closest("th[data-sort]");
    if (!th) { return; }
    var key = th.dataset.sort;
    // First click: rank 1 first, other numbers high to low, a grade A first; again reverses.
    var first = key !== "rank" && key !== "grade";
    state.desc = state.sort === key ? !state.desc : first;
    state.sort = key;
    state.page = 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", state.desc ? "descending" : "ascending");
    load();
  });

  // ------------------------------------------------------------ sections
  // plotly.js (megabytes to parse) is fetched after the first rows are drawn, and each
  // chart is drawn only when it is about to be seen: the first view is the summary and
  // the first rows.
  var waiting = [];
  function withPlotly(fn) {
    if (window.Plotly) { fn(); return; }
    waiting.push(fn);
    if (waiting.length > 1 || !config.plotly) { return; }
    var script = document.createElement("script");
    script.src = config.plotly;
    script.onload = function () { var ready = waiting; waiting = []; ready.forEach(function (f) { f(); }); };
    document.head.appendChild(script);
  }

  function plot(div) {
    if (div.dataset.drawn || div.closest("[hidden]")) { return; }
    div.dataset.drawn = "1";
    withPlotly(function () {
      var fig = JSON.parse(div.dataset.figure);
      window.Plotly.newPlot(div, fig.data, fig.layout, { displaylogo: false, responsive: true });
    });
  }

  var seen = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      if (e.isIntersecting) { seen.unobserve(e.target); plot(e.target); }
    });
  }, { rootMargin: "300px 0px" }) : null;

  function draw(root) {
    root.querySelectorAll("[data-figure]").forEach(function (div) {
      if (div.dataset.drawn || div.closest("[hidden]")) { return; }
      if (seen) { seen.observe(div); } else { plot(div); }
    });
  }

  function choose(select) {
    // A select with data-shows picks which of its section's [data-choice] blocks shows.
    var box = select.closest("section");
    box.querySelectorAll("[data-choice]").forEach(function (b) { b.hidden = b.dataset.choice !== select.value; });
    draw(box);
  }

  function compare(select) {
    var target = document.getElementById("ab-result");
    if (!config.api) { return; }
    target.textContent = t.loading;
    fetch(config.api + "/compare?by=" + encodeURIComponent(select.value) + "&lang=" + config.lang,
          { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { target.innerHTML = html; target.removeAttribute("aria-busy"); });
  }

  var sections = document.getElementById("sections");
  sections.addEventListener("change", function (event) {
    var select = event.target;
    if (select.matches("select[data-shows]")) { choose(select); }
    if (select.matches("select#ab-by")) { compare(select); }
  });

  function loadSections() {
    // After the first rows are drawn: the sections' insights and charts come second.
    if (!sections.dataset.src) { draw(sections); return; }
    fetch(sections.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        sections.innerHTML = html;
        sections.removeAttribute("data-src");
        draw(sections);
        var by = document.getElementById("ab-by"), ab = document.getElementById("ab-result");
        if (by && ab && ab.hasAttribute("aria-busy")) { compare(by); }
      });
  }

  if (config.first) { show(config.first); } else { load(); }
  loadSections();
  // Once the first rows are painted, fetch plotly.js while the sections come (the charts
  // at the top need it): parsing it never holds up the first view.
  requestAnimationFrame(function () { setTimeout(function () { withPlotly(function () {}); }, 0); });
}());
