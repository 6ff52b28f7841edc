"""Server-rendered charts: plain SVG and HTML, styled from reports/dashboard.css.

Nothing here computes a figure: charts draw the released numbers they are given, and a
hidden number is drawn as hidden (hatched, no height), never estimated. No inline styles
or scripts, so the page works under the strict CSP and without JavaScript.
"""

import datetime as dt
from urllib.parse import urlencode

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext

from reports.selectors import Bar, HeatNode
from surveys.periods import period_label

WIDTH = 720
HEIGHT = 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 12, 16, 40
HEAT_STEPS = 5


def _reports_title(name: str, count: int) -> str:
    return ngettext("%(period)s: %(n)d report", "%(period)s: %(n)d reports", count) % {
        "period": name, "n": count}


def _label(period: str, granularity: str, *, short: bool = False) -> str:
    return period_label(period=granularity, start=dt.date.fromisoformat(period), short=short)


def axis_ticks(value: int) -> tuple[int, int, int]:
    """Three evenly spaced integer ticks from 0, a step of 1, 2 or 5 times a power of ten,
    the last at or above `value` (0, 1, 2 for an empty chart)."""
    magnitude = 1
    while True:
        for step in (magnitude, 2 * magnitude, 5 * magnitude):
            if 2 * step >= value:
                return 0, step, 2 * step
        magnitude *= 10


def bar_chart(bars: list[Bar], *, granularity: str, k: int, chart_id: str,
              label: str) -> SafeString:
    """A bar per period; hidden periods get a hatched stub and the word 'hidden'."""
    if not bars:
        return mark_safe("")
    ticks = axis_ticks(max((bar.reports or 0) for bar in bars))
    top = ticks[-1]
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / len(bars)
    bar_w = max(2.0, min(48.0, slot * 0.7))
    label_every = max(1, round(len(bars) / 12))
    parts = [format_html(
        '<svg class="chart" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'xmlns="http://www.w3.org/2000/svg">'
        '<defs><pattern id="{}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" class="hatch-bg"/>'
        '<line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/></pattern></defs>',
        chart_id, WIDTH, HEIGHT, label, chart_id)]
    for tick in ticks:
        y = PAD_TOP + plot_h * (1 - tick / top)
        parts.append(format_html(
            '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
            '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
            PAD_LEFT, WIDTH - PAD_RIGHT, f"{y:.1f}", f"{y:.1f}", PAD_LEFT - 6, f"{y + 4:.1f}",
            tick))
    for index, bar in enumerate(bars):
        x = PAD_LEFT + slot * index + (slot - bar_w) / 2
        name = _label(bar.period, granularity)
        if bar.suppressed:
            stub = 18
            parts.append(format_html(
                '<g class="bar hidden"><title>{}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="url(#{}-hatch)"/></g>',
                _("%(period)s: hidden (fewer than %(k)d reports, or withheld so a small count "
                  "cannot be worked out)") % {"period": name, "k": k},
                f"{x:.1f}", f"{PAD_TOP + plot_h - stub:.1f}", f"{bar_w:.1f}", stub,
                chart_id))
        else:
            height = plot_h * bar.reports / top
            parts.append(format_html(
                '<g class="bar"><title>{}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}"/></g>',
                _reports_title(name, bar.reports), f"{x:.1f}", f"{PAD_TOP + plot_h - height:.1f}",
                f"{bar_w:.1f}", f"{height:.1f}"))
        if index % label_every == 0:
            parts.append(format_html(
                '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                f"{x + bar_w / 2:.1f}", HEIGHT - PAD_BOTTOM + 16,
                _label(bar.period, granularity, short=True)))
        if index == 0 or bars[index - 1].period[:4] != bar.period[:4]:
            parts.append(format_html(
                '<text class="axis year" x="{}" y="{}" text-anchor="start">{}</text>',
                f"{x:.1f}", HEIGHT - 6, bar.period[:4]))
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))  # noqa: S308 - every part above is escaped


def _heat_cell(bar: Bar, top: int, granularity: str, k: int) -> SafeString:
    name = _label(bar.period, granularity)
    if bar.suppressed:
        return format_html(
            '<span class="hm-cell hidden" title="{}"><span class="sr">{}: </span>{}</span>',
            _("%(period)s: hidden, fewer than %(k)d (0 included) or withheld")
            % {"period": name, "k": k}, name, _("hidden"))
    # A released count is >= k, never 0, so every shown cell gets a shade.
    step = 1 + min(HEAT_STEPS - 1, (HEAT_STEPS * bar.reports - 1) // max(top, 1))
    return format_html('<span class="hm-cell h{}" title="{}">'
                       '<span class="sr">{}: </span>{}</span>',
                       step, _reports_title(name, bar.reports), name, bar.reports)


def heatmap(nodes: list[HeatNode], *, periods: tuple[str, ...], granularity: str,
            k: int, open_units: set[str]) -> SafeString:
    """Units × periods as nested <details>: a department opens to its teams without JS."""
    # Shaded against the busiest cell at the same depth: a company row would otherwise
    # wash every team out.
    top: dict[int, int] = {}
    stack = list(nodes)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        top[node.depth] = max([top.get(node.depth, 0)] + [c.reports or 0 for c in node.cells])

    def row(node: HeatNode, inner: SafeString) -> SafeString:
        cells = format_html_join("", "{}", ((_heat_cell(c, top[node.depth], granularity, k),)
                                            for c in node.cells))
        total = (_("hidden") if node.total is None else str(node.total))
        head = format_html(
            '<span class="hm-name" title="{}">{}</span>{}<span class="hm-total">{}</span>',
            node.unit, node.name, cells, total)
        if node.more:
            return format_html(
                '<div class="hm-row leaf" data-unit="{}">{}<a class="hm-more" href="?{}">'
                '{}<span class="sr"> {}</span></a></div>',
                node.unit, head, urlencode({"unit": node.unit}),
                pgettext("a link that shows a unit's sub-units", "open"), node.unit)
        if not node.children:
            return format_html('<div class="hm-row leaf" data-unit="{}">{}</div>', node.unit,
                               head)
        return format_html(
            '<details class="hm-group" data-unit="{}"{}><summary class="hm-row">{}</summary>'
            '<div class="hm-children">{}</div></details>',
            node.unit, mark_safe(" open") if node.unit in open_units else "", head, inner)

    # Children before their parents, without recursion: an org tree may be
    # deeper than the interpreter's stack.
    preorder, stack = [], list(nodes)
    while stack:
        node = stack.pop()
        preorder.append(node)
        if not node.more:
            stack.extend(node.children)
    rendered: dict[int, SafeString] = {}
    for node in reversed(preorder):
        inner = format_html_join("", "{}", ((rendered.pop(id(child)),)
                                            for child in node.children)) if (
            node.children and not node.more) else ""
        rendered[id(node)] = row(node, inner)

    header = format_html_join("", '<span class="hm-cell head" title="{}">{}</span>', (
        (_label(p, granularity), _label(p, granularity, short=True))
        for p in periods))
    body = format_html_join("", "{}", ((rendered[id(node)],) for node in nodes))
    legend = format_html_join("", '<span class="hm-cell h{}">{}</span>', (
        (step, label) for step, label in ((1, _("few")), (3, _("more")), (5, _("many")))))
    return format_html(
        '<div class="heatmap">'
        '<div class="hm-row head"><span class="hm-name">{}</span>{}'
        '<span class="hm-total">{}</span></div>{}</div>'
        '<p class="hm-legend" aria-hidden="true">{}<span class="hm-cell hidden">{}</span>'
        '</p>', _("Unit"), header, _("All"), body, legend, _("hidden"))
