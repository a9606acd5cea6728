// The console's live parts, without a build step or a library.
// - An element with data-poll="URL" is refreshed every data-interval ms with the HTML fragment at URL,
//   changed nodes only: focus, text selection and open <details> survive; verdict changes are
//   announced politely (data-news names an aria-live element).
// - When the server cannot be reached, a banner says so, the page is greyed and every button is
//   disabled until it answers again; a form is sent only after the server answered a ping.
(function () {
  'use strict';
  var lostSince = null;
  var failures = 0;
  var zone = document.body.getAttribute('data-tz') || 'UTC';

  function clock(d) {
    try {
      // Each field asked for by name: with only hour12: false, Chromium writes 00:09 as "0:09".
      return d.toLocaleTimeString('en-GB', {
        timeZone: zone, hourCycle: 'h23', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short'
      });
    } catch (e) {
      return d.toISOString().slice(11, 19) + ' UTC';
    }
  }

  function say(text) {
    var status = document.querySelector('[data-updated]');
    if (status) status.textContent = text;
  }

  // ---- the server's reachability
  function banner() {
    var b = document.getElementById('server-lost');
    if (!b) {
      b = document.createElement('p');
      b.id = 'server-lost';
      b.className = 'server-lost';
      b.setAttribute('role', 'alert');
      document.body.insertBefore(b, document.body.firstChild);
    }
    return b;
  }

  function lost(now) {
    failures += 1;
    if ((failures < 2 && !now) || lostSince) return;
    lostSince = new Date();
    document.body.classList.add('lost');
    banner().textContent = 'The CSMS cannot be reached since ' + clock(lostSince) +
      ': what you see is from then, and actions are off until it answers again.';
    document.querySelectorAll('main button:not([disabled])').forEach(function (b) {
      b.disabled = true;
      b.setAttribute('data-lost', '1');
    });
    say('connection lost, retrying');
  }

  function back() {
    failures = 0;
    if (!lostSince) return;
    lostSince = null;
    document.body.classList.remove('lost');
    var b = document.getElementById('server-lost');
    if (b) b.remove();
    document.querySelectorAll('main button[data-lost]').forEach(function (x) {
      x.disabled = false;
      x.removeAttribute('data-lost');
    });
  }

  async function ping() {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, 3000);
    try {
      var res = await fetch('/ui/ping', { cache: 'no-store', signal: ctl.signal });
      if (res.ok) { back(); return true; }
    } catch (e) { /* unreachable */ } finally { clearTimeout(timer); }
    lost();
    return false;
  }

  // ---- keyed, minimal DOM updates
  function key(n) {
    return n.nodeType === 1
      ? (n.getAttribute('data-key') || n.getAttribute('data-connector') || n.getAttribute('data-charger') || '')
      : '';
  }

  function same(a, b) {
    return a.nodeType === b.nodeType && a.nodeName === b.nodeName && key(a) === key(b);
  }

  function syncAttributes(a, b) {
    Array.prototype.slice.call(a.attributes).forEach(function (at) {
      if (at.name !== 'open' && at.name !== 'data-lost' && at.name !== 'disabled' && !b.hasAttribute(at.name)) {
        a.removeAttribute(at.name);
      }
    });
    Array.prototype.slice.call(b.attributes).forEach(function (at) {
      if (a.getAttribute(at.name) !== at.value) a.setAttribute(at.name, at.value);
    });
  }

  function morph(oldParent, newParent) {
    var olds = oldParent.childNodes;
    var news = Array.prototype.slice.call(newParent.childNodes);
    var aligned = olds.length === news.length && news.every(function (n, i) { return same(olds[i], n); });
    if (!aligned) {
      oldParent.replaceChildren.apply(oldParent, news);
      return;
    }
    news.forEach(function (b, i) {
      var a = olds[i];
      if (a.nodeType !== 1) {
        if (a.nodeValue !== b.nodeValue) a.nodeValue = b.nodeValue;
      } else if (!a.isEqualNode(b)) {
        syncAttributes(a, b);
        morph(a, b);
      }
    });
  }

  function verdicts(root) {
    var out = {};
    root.querySelectorAll('[data-connector][data-verdict]').forEach(function (n) {
      out[n.getAttribute('data-connector')] = n.getAttribute('data-verdict');
    });
    return out;
  }

  function announce(el, before, after) {
    var news = document.getElementById(el.getAttribute('data-news') || '');
    if (!news) return;
    var changes = Object.keys(after).filter(function (k) { return k in before && before[k] !== after[k]; });
    if (!changes.length) return;
    var words = changes.slice(0, 3).map(function (k) {
      var p = k.split('/');
      return p[0] + ' connector ' + p[1] + ' is now ' + after[k];
    });
    if (changes.length > 3) words.push('and ' + (changes.length - 3) + ' more changed');
    news.textContent = words.join('; ') + '.';
  }

  function focusKey(el) {
    var a = document.activeElement;
    if (!a || !el.contains(a)) return null;
    return a.getAttribute('href') || a.id || null;
  }

  function refocus(el, k) {
    if (!k || el.contains(document.activeElement)) return;
    var found = Array.prototype.find.call(el.querySelectorAll('a[href], [id]'), function (n) {
      return n.getAttribute('href') === k || n.id === k;
    });
    if (found) found.focus({ preventScroll: true });
  }

  function update(el, html) {
    var sel = window.getSelection();
    if (sel && !sel.isCollapsed && el.contains(sel.anchorNode)) return false; // keep what is being selected
    var next = document.createElement('template');
    next.innerHTML = html;
    var before = verdicts(el);
    var k = focusKey(el);
    morph(el, next.content);
    if (lostSince) el.querySelectorAll('button:not([disabled])').forEach(function (b) {
      b.disabled = true; b.setAttribute('data-lost', '1');
    });
    refocus(el, k);
    announce(el, before, verdicts(el));
    return true;
  }

  var leaving = false; // a POST form is on its way: the page is about to be replaced

  function poll(el) {
    var url = el.getAttribute('data-poll');
    var every = parseInt(el.getAttribute('data-interval'), 10) || 2000;
    var busy = false;
    async function tick() {
      if (busy || document.hidden) return;
      busy = true;
      try {
        var res = await fetch(url, { headers: { 'X-UI-Poll': '1' }, credentials: 'same-origin', cache: 'no-store' });
        if (res.status === 401) {
          // Not while a form is being sent: signing out ends the session under the poll, and its own page
          // ("You signed out.") must not be replaced by "Your session ended".
          if (!leaving) location.href = '/ui/login?why=ended&next=' + encodeURIComponent(location.pathname + location.search);
          return;
        }
        if (res.status >= 502) { lost(); return; }
        back();
        if (!res.ok) return;
        var html = await res.text();
        if (html !== el.dataset.last && update(el, html)) el.dataset.last = html;
        say('updated ' + clock(new Date()));
      } catch (e) {
        lost();
      } finally {
        busy = false;
      }
    }
    setInterval(tick, every);
    document.addEventListener('visibilitychange', function () { if (!document.hidden) tick(); });
  }

  // A POST form is sent only after the server answered a ping: never onto "This site can't be reached".
  // One send per click (a double click sends once); the state resets when the page comes back from history.
  function guardForms() {
    document.addEventListener('submit', function (ev) {
      var form = ev.target;
      if (form.method.toLowerCase() !== 'post') return;
      if (form.dataset.bypass === '1') { form.dataset.bypass = ''; leaving = true; return; }
      ev.preventDefault();
      if (form.dataset.pending === '1') return;
      form.dataset.pending = '1';
      var button = ev.submitter || null;
      ping().then(function (ok) {
        if (!ok) {
          form.dataset.pending = '';
          lost(true);
          return;
        }
        form.dataset.bypass = '1';
        form.requestSubmit(button);
      });
    });
    window.addEventListener('pageshow', function () {
      leaving = false;
      document.querySelectorAll('form[data-pending], form[data-bypass]').forEach(function (f) {
        delete f.dataset.pending;
        delete f.dataset.bypass;
      });
    });
  }

  function init() {
    document.querySelectorAll('[data-poll]').forEach(poll);
    document.querySelectorAll('form[data-autosubmit] input[type=checkbox], form[data-autosubmit] select')
      .forEach(function (box) {
        box.addEventListener('change', function () { box.form.submit(); });
      });
    if (document.body.hasAttribute('data-signed-in')) {
      guardForms();
      setInterval(function () { if (lostSince || !document.querySelector('[data-poll]')) ping(); }, 2500);
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
