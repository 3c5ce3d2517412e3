import type { JsonValue, ResourceRef } from '../contracts/chain';
import { RESOURCE_TEMPLATE, templateArguments, type McpToolRule } from '../policies/manifest';

/**
 * Maps an MCP tool call to the action, resource and context of a governed step, by the bundle's rules
 * (`manifest.yaml` `mcp.tools`). Pure. An argument the rules cannot place is refused with its name, and
 * nothing is proposed: a template is filled only with canonical, quote-free strings, so no argument can
 * change a resource's type, smuggle a second path past a pattern, or walk out of a folder with `..`.
 */

export type Mapped = { ok: true; action: string; resource: ResourceRef; context: Record<string, JsonValue> };
export type Unmapped = { ok: false; reason: string };

/** Largest value a template may place (a resource id is at most 256 characters). */
const MAX_VALUE = 256;

/** The rule for a tool of an upstream: `server/tool` wins over `tool`; none means the tool is refused. */
export function ruleFor(
  rules: Readonly<Record<string, McpToolRule>>,
  server: string,
  tool: string,
): McpToolRule | undefined {
  return Object.hasOwn(rules, `${server}/${tool}`)
    ? rules[`${server}/${tool}`]
    : Object.hasOwn(rules, tool)
      ? rules[tool]
      : undefined;
}

/** Why a value cannot be placed, or undefined when it can. Never echoes the value. */
function unplaceable(value: unknown): string | undefined {
  if (value === undefined) return 'is missing';
  if (typeof value !== 'string') return 'must be a string';
  if (value.length === 0) return 'must not be empty';
  if (value.length > MAX_VALUE) return `is longer than ${MAX_VALUE} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f"\\{}]/.test(value)) return 'holds a quote, backslash, brace or control character';
  const segments = value.split('/');
  if (segments.some((s) => s === '.' || s === '..')) return 'holds a . or .. path segment';
  if (segments.slice(1, -1).some((s) => s === '')) return 'holds an empty path segment (//)';
  return undefined;
}

function fill(template: string, args: Readonly<Record<string, unknown>>): string {
  return template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => args[name] as string);
}

/** Maps one call. `args` are the call's arguments as the client sent them (any JSON). */
export function mapToolCall(rule: McpToolRule, tool: string, args: unknown): Mapped | Unmapped {
  if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) {
    return { ok: false, reason: `tool ${tool}: arguments must be an object` };
  }
  const given = (args ?? {}) as Record<string, unknown>;
  const templates = [rule.resource, ...Object.values(rule.context)];
  const names = [...new Set(templates.flatMap(templateArguments))];
  for (const name of names) {
    const why = unplaceable(Object.hasOwn(given, name) ? given[name] : undefined);
    if (why) return { ok: false, reason: `tool ${tool}: argument ${name} ${why}; the call was not proposed` };
  }
  const [, type, idTemplate] = RESOURCE_TEMPLATE.exec(rule.resource)!;
  const id = fill(idTemplate!, given);
  if (id.length === 0 || id.length > MAX_VALUE) {
    return { ok: false, reason: `tool ${tool}: the resource id must be 1-${MAX_VALUE} characters` };
  }
  const context: Record<string, JsonValue> = {};
  for (const [key, template] of Object.entries(rule.context)) context[key] = fill(template, given);
  return { ok: true, action: rule.action, resource: { type: type!, id }, context };
}
