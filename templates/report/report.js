/* flow report: renders the per-line table from the JSON block, a page at a time.
   Data is only ever put in the page with textContent / createTextNode, never as HTML.
   Filter state lives in the URL hash (#status=failed&q=refund&page=2) so a link shares it. */
(function () {
  'use strict';
  var started = window.performance ? performance.now() : 0;
  var D = JSON.parse(document.getElementById('report-data').textContent);
  var S = D.strings; /* every text, once; the data refers to them by index */
  var PAGE_SIZE = 50;
  var DEFAULTS = { ds: '0', status: 'all', metric: '', below: '', q: '', differ: '', sort: 'line', dir: 'asc', page: '1', open: '' };
  var state = {};
  var haystacks = [];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function byId(id) { return document.getElementById(id); }
  function num(x, digits) {
    if (x === null || x === undefined) { return '—'; }
    var d = digits === undefined ? 3 : digits;
    var s = Number(x).toFixed(d);
    if (s.indexOf('.') >= 0) { s = s.replace(/0+$/, '').replace(/\.$/, ''); }
    return s;
  }
  function ms(x) { return x >= 1000 ? num(x / 1000, 2) + ' s' : num(x, 1) + ' ms'; }
  function thousands(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ','); }

  /* ---- state <-> URL hash ---- */
  function readHash() {
    var s = {};
    Object.keys(DEFAULTS).forEach(function (k) { s[k] = DEFAULTS[k]; });
    var h = window.location.hash.replace(/^#/, '');
    if (h) {
      h.split('&').forEach(function (part) {
        var i = part.indexOf('=');
        if (i < 0) { return; }
        var k = decodeURIComponent(part.slice(0, i).replace(/\+/g, ' '));
        var v = decodeURIComponent(part.slice(i + 1).replace(/\+/g, ' '));
        if (Object.prototype.hasOwnProperty.call(DEFAULTS, k)) { s[k] = v; }
      });
    }
    if (!(Number(s.ds) >= 0 && Number(s.ds) < D.datasets.length)) { s.ds = '0'; }
    return s;
  }
  function writeHash() {
    var parts = [];
    Object.keys(DEFAULTS).forEach(function (k) {
      if (state[k] !== DEFAULTS[k]) { parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(state[k])); }
    });
    var h = parts.length ? '#' + parts.join('&') : '';
    if (window.location.hash !== h && history.replaceState) {
      history.replaceState(null, '', h || window.location.pathname + window.location.search);
    }
  }
  var controls = { ds: 'f-ds', status: 'f-status', metric: 'f-metric', below: 'f-below', q: 'f-q', differ: 'f-differ', sort: 'f-sort', dir: 'f-dir' };
  function syncControls() {
    Object.keys(controls).forEach(function (k) {
      var c = byId(controls[k]);
      if (!c) { return; }
      if (c.type === 'checkbox') { c.checked = state[k] === '1'; } else { c.value = state[k]; }
    });
  }
  function readControls() {
    Object.keys(controls).forEach(function (k) {
      var c = byId(controls[k]);
      if (!c) { return; }
      state[k] = c.type === 'checkbox' ? (c.checked ? '1' : '') : c.value;
    });
  }

  /* ---- expanded traces: line numbers of the current dataset, in the hash as open=1,7 ---- */
  function openLines() { return state.open ? state.open.split(',') : []; }
  function isOpen(n) { return openLines().indexOf(String(n)) >= 0; }
  function toggleOpen(n) {
    var open = openLines(), i = open.indexOf(String(n));
    if (i >= 0) { open.splice(i, 1); } else { open.push(String(n)); }
    state.open = open.join(',');
  }

  /* ---- which runs and lines ---- */
  function visibleRuns() {
    var ds = Number(state.ds), out = [];
    D.runs.forEach(function (r, i) { if (r.dataset === ds) { out.push(i); } });
    return out;
  }
  function baselineOf(runs) {
    return runs.indexOf(D.baseline) >= 0 ? D.baseline : runs[0];
  }
  function haystack(i) {
    if (haystacks[i] === undefined) {
      var line = D.lines[i], parts = line.i.map(function (k) { return S[k]; });
      line.r.forEach(function (c) {
        if (!c) { return; }
        c.o.forEach(function (o) { if (o !== null) { parts.push(S[o]); } });
        if (c.e !== undefined) { parts.push(S[c.e]); }
        (c.ev || []).forEach(function (v) { if (v !== null) { parts.push(S[v]); } });
      });
      haystacks[i] = parts.join('\n').toLowerCase();
    }
    return haystacks[i];
  }
  function scoreIndex(name) { return D.scores.indexOf(name); }
  function matches(i, runs) {
    var line = D.lines[i];
    if (line.d !== Number(state.ds)) { return false; }
    var cells = runs.map(function (r) { return line.r[r]; }).filter(function (c) { return c; });
    if (state.status === 'failed' && !cells.some(function (c) { return !c.p; })) { return false; }
    if (state.status === 'errors' && !cells.some(function (c) { return c.s !== 'Completed'; })) { return false; }
    if (state.status === 'passed' && !(cells.length && cells.every(function (c) { return c.p; }))) { return false; }
    if (state.below !== '' && !isNaN(Number(state.below))) {
      var x = Number(state.below), si = state.metric ? scoreIndex(state.metric) : -1;
      var low = cells.some(function (c) {
        return (c.sc || []).some(function (s, k) {
          if (!s || (si >= 0 && k !== si)) { return false; }
          return s[0] === null ? !s[1] : s[0] < x;
        });
      });
      if (!low) { return false; }
    }
    if (state.differ === '1') {
      var texts = cells.map(function (c) { return JSON.stringify(c.o); });
      if (texts.every(function (t) { return t === texts[0]; })) { return false; }
    }
    if (state.q) {
      var words = state.q.toLowerCase().split(/\s+/).filter(Boolean), h = haystack(i);
      if (!words.every(function (w) { return h.indexOf(w) >= 0; })) { return false; }
    }
    return true;
  }
  function sortKey(i, runs) {
    var line = D.lines[i];
    if (state.sort === 'line') { return line.n; }
    var vals = [];
    runs.forEach(function (r) {
      var c = line.r[r];
      if (!c) { return; }
      if (state.sort === 'latency') { vals.push(c.l); } else if (state.sort === 'tokens') { vals.push(c.t); } else if (state.sort.indexOf('score:') === 0) {
        var s = (c.sc || [])[scoreIndex(state.sort.slice(6))];
        if (s && s[0] !== null) { vals.push(s[0]); } else if (s) { vals.push(-Infinity); }
      }
    });
    if (!vals.length) { return null; }
    return state.sort.indexOf('score:') === 0 ? Math.min.apply(null, vals) : Math.max.apply(null, vals);
  }
  function selectLines(runs) {
    var idx = [];
    for (var i = 0; i < D.lines.length; i++) { if (matches(i, runs)) { idx.push(i); } }
    if (state.sort !== 'line' || state.dir === 'desc') {
      var keys = {};
      idx.forEach(function (i) { keys[i] = sortKey(i, runs); });
      var sign = state.dir === 'desc' ? -1 : 1;
      idx.sort(function (a, b) {
        var ka = keys[a], kb = keys[b];
        if (ka === kb) { return D.lines[a].n - D.lines[b].n; }
        if (ka === null) { return 1; }
        if (kb === null) { return -1; }
        return ka < kb ? -sign : sign;
      });
    }
    return idx;
  }

  /* ---- word diff (LCS over words and spaces) ---- */
  function tokens(s) { return s.match(/\s+|[^\s]+/g) || []; }
  function diff(a, b) {
    var n = a.length, m = b.length;
    if (n * m > 250000) { return null; }
    var w = m + 1, t = new Uint32Array((n + 1) * w);
    for (var i = n - 1; i >= 0; i--) {
      for (var j = m - 1; j >= 0; j--) {
        t[i * w + j] = a[i] === b[j] ? t[(i + 1) * w + j + 1] + 1 : Math.max(t[(i + 1) * w + j], t[i * w + j + 1]);
      }
    }
    var ops = [], x = 0, y = 0;
    function push(kind, text) {
      if (ops.length && ops[ops.length - 1][0] === kind) { ops[ops.length - 1][1] += text; } else { ops.push([kind, text]); }
    }
    while (x < n && y < m) {
      if (a[x] === b[y]) { push('=', a[x]); x++; y++; } else if (t[(x + 1) * w + y] >= t[x * w + y + 1]) { push('-', a[x]); x++; } else { push('+', b[y]); y++; }
    }
    while (x < n) { push('-', a[x++]); }
    while (y < m) { push('+', b[y++]); }
    return ops;
  }
  function textBlock(text, base) {
    var box = el('div', 'text');
    if (base === undefined || base === null || text === base) {
      box.textContent = text;
      return box;
    }
    var ops = diff(tokens(base), tokens(text));
    if (!ops) { box.textContent = text; box.title = 'too long to diff'; return box; }
    ops.forEach(function (op) {
      if (op[0] === '=') { box.appendChild(document.createTextNode(op[1])); } else { box.appendChild(el(op[0] === '+' ? 'ins' : 'del', null, op[1])); }
    });
    return box;
  }

  /* ---- rendering ---- */
  /* An image value (D.images, by text index): a thumbnail from a data: URI, and its note. */
  function imageNode(t) {
    var im = D.images && D.images[t];
    if (!im) { return null; }
    var box = el('div', 'thumb');
    if (im.u) {
      var img = document.createElement('img');
      img.src = im.u; /* always a data: URI, built by flow */
      img.alt = im.n;
      img.title = im.n;
      box.appendChild(img);
    }
    box.appendChild(el('div', 'thumb-note', im.n));
    return box;
  }
  function kv(key, valueNode) {
    var d = el('div', 'kv');
    d.appendChild(el('span', 'k', key));
    d.appendChild(valueNode);
    return d;
  }
  function badge(cls, text, title) {
    var b = el('span', 'badge ' + cls, text);
    if (title) { b.title = title; }
    return b;
  }
  function runCell(line, r, base) {
    var td = el('td', 'cell');
    var c = line.r[r];
    if (!c) { td.appendChild(el('span', 'absent', 'not run')); return td; }
    var b = base !== r ? line.r[base] : null;
    var badges = el('div', 'badges');
    badges.appendChild(c.s === 'Completed' ? badge(c.p ? 'ok' : 'no', c.p ? '✓ passed' : '✗ not passed') : badge('no', '✗ ' + c.s));
    (c.sc || []).forEach(function (s, k) {
      if (!s) { return; }
      badges.appendChild(badge(s[1] ? 'ok' : 'no', D.scores[k] + ' ' + (s[0] === null ? 'n/a' : num(s[0])), S[s[2]]));
    });
    (c.ev || []).forEach(function (v, k) {
      if (v !== null) { badges.appendChild(badge('info', D.eval_outputs[k] + ': ' + S[v])); }
    });
    td.appendChild(badges);
    var same = b && JSON.stringify(b.o) === JSON.stringify(c.o);
    c.o.forEach(function (o, k) {
      if (o === null) { return; }
      var baseText = b && b.o[k] !== null ? S[b.o[k]] : null;
      td.appendChild(kv(D.outputs.length > 1 ? D.outputs[k] : 'output', imageNode(o) || textBlock(S[o], same ? null : baseText)));
    });
    if (same) { td.appendChild(el('div', 'same-note', 'same as ' + D.runs[base].label)); }
    if (c.e !== undefined) { td.appendChild(el('div', 'err', S[c.e])); }
    td.appendChild(el('div', 'stats', ms(c.l) + ' · ' + thousands(c.t) + ' tokens' + (c.c ? ' · $' + num(c.c, 6) : '')));
    return td;
  }
  function traceView(line, runs) {
    var box = el('div', 'traces');
    box.style.gridTemplateColumns = 'repeat(' + runs.length + ', minmax(0, 1fr))';
    runs.forEach(function (r) {
      var c = line.r[r], t = el('div', 'trace');
      var h = el('h4');
      h.appendChild(el('span', 'dot c' + (r % 8)));
      h.appendChild(document.createTextNode(D.runs[r].label));
      t.appendChild(h);
      if (!c) { t.appendChild(el('span', 'absent', 'not run')); box.appendChild(t); return; }
      (c.sc || []).forEach(function (s, k) {
        if (s && S[s[2]]) { t.appendChild(el('div', 'reason', D.scores[k] + ': ' + S[s[2]])); }
      });
      if (!c.x || !c.x.length) {
        t.appendChild(el('span', 'absent', D.traces === 'all' ? 'no node records' :
          D.traces === 'none' ? 'node traces were left out of this report' :
          'node traces are included for lines that did not pass (flow report --traces all for every line)'));
      }
      (c.x || []).forEach(function (n) {
        var node = el('div', 'node'), head = el('div', 'node-head');
        head.appendChild(el('b', null, S[n.n]));
        head.appendChild(badge(n.s === 'Completed' ? 'ok' : (n.s === 'Bypassed' ? 'info' : 'no'), n.s));
        head.appendChild(el('span', 'stats', ms(n.d)));
        if (n.t) { head.appendChild(el('span', 'stats', thousands(n.t[2]) + ' tokens (' + n.t[0] + ' + ' + n.t[1] + ')')); }
        if (n.m !== undefined) { head.appendChild(el('span', 'stats', S[n.m])); }
        if (n.k) { head.appendChild(badge('info', 'cached')); }
        node.appendChild(head);
        var params = el('dl', 'params');
        n.i.forEach(function (pair) {
          var value = S[pair[1]];
          if (value.length <= 60 && value.indexOf('\n') < 0) {
            params.appendChild(el('dt', null, S[pair[0]]));
            params.appendChild(el('dd', null, value));
          } else {
            node.appendChild(kv('input · ' + S[pair[0]], el('pre', null, value)));
          }
        });
        if (params.childNodes.length) { node.insertBefore(params, node.childNodes[1] || null); }
        node.appendChild(kv('output', el('pre', null, S[n.o])));
        if (n.e !== undefined) { node.appendChild(el('div', 'err', S[n.e])); }
        t.appendChild(node);
      });
      box.appendChild(t);
    });
    return box;
  }
  function renderHead(runs, base) {
    var head = byId('line-head');
    head.textContent = '';
    var table = byId('line-table');
    var old = table.querySelector('colgroup');
    if (old) { table.removeChild(old); }
    var cg = el('colgroup');
    cg.appendChild(el('col', 'num'));
    if (D.inputs.length) { cg.appendChild(el('col', 'inputs')); }
    runs.forEach(function () { cg.appendChild(el('col', 'run')); });
    table.insertBefore(cg, head);
    var tr = el('tr');
    tr.appendChild(el('th', null, '#'));
    if (D.inputs.length) { tr.appendChild(el('th', null, 'inputs')); }
    runs.forEach(function (r) {
      var th = el('th');
      th.appendChild(el('span', 'dot c' + (r % 8)));
      th.appendChild(document.createTextNode(D.runs[r].label + (r === base && runs.length > 1 ? ' (diff base)' : '')));
      tr.appendChild(th);
    });
    head.appendChild(tr);
  }
  function renderPager(id, total, matching, page, pages) {
    var p = byId(id);
    p.textContent = '';
    var from = matching ? (page - 1) * PAGE_SIZE + 1 : 0, to = Math.min(page * PAGE_SIZE, matching);
    var count = el('span', 'count', matching ? 'Lines ' + thousands(from) + '–' + thousands(to) + ' of ' + thousands(matching) + (matching !== total ? ' matching (' + thousands(total) + ' in all)' : '') : 'No line matches (' + thousands(total) + ' in all)');
    count.setAttribute('data-matching', String(matching));
    p.appendChild(count);
    function button(label, target, disabled) {
      var b = el('button', null, label);
      b.type = 'button';
      b.disabled = disabled;
      b.addEventListener('click', function () { state.page = String(target); update(false); window.scrollTo(0, byId('lines').offsetTop); });
      p.appendChild(b);
    }
    button('« first', 1, page <= 1);
    button('‹ prev', page - 1, page <= 1);
    p.appendChild(el('span', null, 'page ' + page + ' of ' + pages));
    button('next ›', page + 1, page >= pages);
    button('last »', pages, page >= pages);
  }
  /* The summary groups (cards, metrics table) follow the dataset the line table shows. */
  function showGroups() {
    var groups = document.querySelectorAll('.ds-group[data-ds]');
    for (var g = 0; g < groups.length; g++) { groups[g].hidden = groups[g].getAttribute('data-ds') !== state.ds; }
  }
  /* Whether the page is wider than the window (a test reads this). */
  function markOverflow() {
    var wide = document.documentElement.scrollWidth > window.innerWidth;
    document.body.setAttribute('data-overflow', wide ? 'true' : 'false');
  }
  function update(fromHash) {
    if (fromHash) { state = readHash(); syncControls(); }
    showGroups();
    var runs = visibleRuns(), base = baselineOf(runs);
    var total = 0;
    D.lines.forEach(function (l) { if (l.d === Number(state.ds)) { total++; } });
    var idx = selectLines(runs);
    var pages = Math.max(1, Math.ceil(idx.length / PAGE_SIZE));
    var page = Math.min(Math.max(1, parseInt(state.page, 10) || 1), pages);
    state.page = String(page);
    writeHash();
    renderHead(runs, base);
    var body = byId('rows');
    body.textContent = '';
    var cols = 1 + (D.inputs.length ? 1 : 0) + runs.length;
    idx.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE).forEach(function (i) {
      var line = D.lines[i];
      var cells = runs.map(function (r) { return line.r[r]; });
      var tr = el('tr', 'line' + (cells.some(function (c) { return c && !c.p; }) ? ' failed' : ''));
      tr.setAttribute('data-line', String(line.n));
      var n = el('td', 'n', String(line.n));
      var open = isOpen(line.n);
      var toggle = el('button', null, open ? '▾ trace' : '▸ trace');
      toggle.type = 'button';
      toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
      toggle.addEventListener('click', function () { toggleOpen(line.n); update(false); });
      n.appendChild(toggle);
      tr.appendChild(n);
      if (D.inputs.length) {
        var inputs = el('td', 'inputs');
        line.i.forEach(function (v, k) { inputs.appendChild(kv(D.inputs[k], imageNode(v) || el('div', 'text clip', S[v]))); });
        tr.appendChild(inputs);
      }
      runs.forEach(function (r) { tr.appendChild(runCell(line, r, base)); });
      body.appendChild(tr);
      if (open) {
        var dr = el('tr', 'detail'), td = el('td');
        td.colSpan = cols;
        td.appendChild(traceView(line, runs));
        dr.appendChild(td);
        body.appendChild(dr);
      }
    });
    renderPager('pager-top', total, idx.length, page, pages);
    renderPager('pager-bottom', total, idx.length, page, pages);
  }

  var form = byId('controls');
  function onControl() {
    var ds = state.ds;
    readControls();
    state.page = '1';
    if (state.ds !== ds) { state.open = ''; }
    update(false);
  }
  form.addEventListener('input', onControl);
  form.addEventListener('change', onControl);
  form.addEventListener('submit', function (e) { e.preventDefault(); });
  byId('f-reset').addEventListener('click', function () {
    Object.keys(DEFAULTS).forEach(function (k) { state[k] = DEFAULTS[k]; });
    syncControls();
    update(false);
  });
  window.addEventListener('hashchange', function () { update(true); });
  update(true);
  markOverflow();
  window.addEventListener('resize', markOverflow);
  document.body.setAttribute('data-ready', 'true');
  /* How long parsing the data and building the first page took (for the benchmark). */
  if (window.performance) { document.body.setAttribute('data-ready-ms', String(Math.round(performance.now() - started))); }
  if (window.performance) { document.body.setAttribute('data-page-ms', String(Math.round(performance.now()))); }
}());
