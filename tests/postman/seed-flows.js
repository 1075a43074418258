// The hand-kept folder "Seed flows" of docs/keyledger.postman_collection.json: the seeds'
// integrations, each a subfolder that stands on its own (it makes the key it needs with the
// root key `{{apiKey}}`, and revokes it at the end), with pm.test assertions.
//
// Edit here, never in the committed collection: `tests/postman/run.sh --update` merges this
// folder with the part generated from /openapi.json, and CI fails when the committed file is
// not what that writes. Test scripts are written as functions; their bodies become the
// request's script, line for line (they run in Postman's sandbox, not in node).
'use strict';

// A request signed with the key in collection variable `keyVar` (the root key when omitted).
function request({ name, method, path, query = [], body, keyVar, test, prerequest, description }) {
  const req = {
    method,
    header: [{ key: 'Accept', value: 'application/json' }],
    url: url(path, query),
  };
  if (description) req.description = description;
  if (body !== undefined) {
    req.header.push({ key: 'Content-Type', value: 'application/json' });
    req.body = { mode: 'raw', raw: JSON.stringify(body, null, 2), options: { raw: { language: 'json' } } };
  }
  if (keyVar) {
    req.auth = { type: 'bearer', bearer: [{ key: 'token', value: `{{${keyVar}}}`, type: 'string' }] };
  }
  const event = [];
  if (prerequest) event.push({ listen: 'prerequest', script: { type: 'text/javascript', exec: lines(prerequest) } });
  if (test) event.push({ listen: 'test', script: { type: 'text/javascript', exec: lines(test) } });
  return { name, event, request: req, response: [] };
}

// `path` is relative to {{baseUrl}}, e.g. '/organizations/{{orgId}}/work-orders'.
function url(path, query) {
  const q = query.map(([key, value]) => ({ key, value }));
  const raw = `{{baseUrl}}${path}${q.length ? '?' + q.map((p) => `${p.key}=${p.value}`).join('&') : ''}`;
  const out = { raw, host: ['{{baseUrl}}'], path: path.replace(/^\//, '').split('/') };
  if (q.length) out.query = q;
  return out;
}

// The body of a function, dedented, as Postman's `exec` lines.
function lines(fn) {
  const src = fn.toString();
  const body = src.slice(src.indexOf('{') + 1, src.lastIndexOf('}')).split('\n');
  while (body.length && body[0].trim() === '') body.shift();
  while (body.length && body[body.length - 1].trim() === '') body.pop();
  const indent = Math.min(...body.filter((l) => l.trim()).map((l) => l.match(/^ */)[0].length));
  return body.map((l) => l.slice(indent).replace(/\s+$/, ''));
}

function folder(name, description, item) {
  return { name, description, item };
}

const keys = '/organizations/{{orgId}}/api-keys';
const workOrders = '/organizations/{{orgId}}/work-orders';
const assets = '/organizations/{{orgId}}/assets';

// The root key makes a key for one flow and keeps its secret and id in collection
// variables `<v>` and `<v>Id`. Written out per flow: the sandbox has no shared helpers.
function createKey(v, name, scopes) {
  return request({
    name: `Root key creates the ${name} key (${scopes.join(', ')})`,
    method: 'POST',
    path: keys,
    body: { name, scopes },
    test: new Function(`
      const key = pm.response.json();
      pm.collectionVariables.set('${v}', key.secret);
      pm.collectionVariables.set('${v}Id', key.id);
      pm.test('201 Created, with the secret once', function () {
        pm.response.to.have.status(201);
        pm.expect(key.secret).to.match(/^kl_(live|test)_/);
        pm.expect(key.scopes.slice().sort()).to.eql(${JSON.stringify(scopes.slice().sort())});
        pm.expect(key.status).to.eql('active');
      });
      pm.test('Location names the new key', function () {
        pm.expect(pm.response.headers.get('Location')).to.eql(
          '/organizations/' + pm.variables.get('orgId') + '/api-keys/' + pm.response.json().id);
      });
    `),
  });
}

function revokeKey(v, name) {
  return request({
    name: `Clean up: root key revokes the ${name} key`,
    method: 'POST',
    path: `${keys}/{{${v}Id}}/revoke`,
    body: { reason: 'seed flow done' },
    test: new Function(`
      pm.test('200, the key is revoked', function () {
        pm.response.to.have.status(200);
        pm.expect(pm.response.json().status).to.eql('revoked');
      });
      pm.collectionVariables.unset('${v}');
    `),
  });
}

const checkVariables = request({
  name: 'Check the variables: the root key answers /whoami in organisation orgId',
  method: 'GET',
  path: '/whoami',
  description: 'Fails first, and says why, when baseUrl, apiKey or orgId is wrong.',
  test() {
    pm.test('apiKey is a valid key (200 from /whoami)', function () {
      pm.response.to.have.status(200);
    });
    pm.test('apiKey belongs to orgId', function () {
      pm.expect(pm.response.json().org_id).to.eql(pm.variables.get('orgId'));
    });
    pm.test('apiKey may create keys and use every data scope the flows need', function () {
      const scopes = pm.response.json().scopes;
      ['api-keys:create', 'api-keys:revoke', 'work-orders:read', 'work-orders:write', 'assets:read', 'assets:write']
        .forEach(function (s) { pm.expect(scopes).to.include(s); });
    });
  },
});

const erp = folder(
  'ERP poll',
  'SAP ERP polls the completed work orders with a read-only key (`work-orders:read`); it may not create one.',
  [
    createKey('erpKey', 'SAP ERP Integration', ['work-orders:read']),
    request({
      name: 'Setup: root key opens a work order',
      method: 'POST',
      path: workOrders,
      body: { title: 'Replace bearing on conveyor 3', priority: 'Medium' },
      test() {
        pm.collectionVariables.set('erpWorkOrderId', pm.response.json().id);
        pm.test('201 Created', function () {
          pm.response.to.have.status(201);
        });
      },
    }),
    request({
      name: 'Setup: root key completes it',
      method: 'PATCH',
      path: `${workOrders}/{{erpWorkOrderId}}`,
      body: { status: 'Completed' },
      test() {
        pm.test('200, Completed', function () {
          pm.response.to.have.status(200);
          pm.expect(pm.response.json().status).to.eql('Completed');
        });
      },
    }),
    request({
      name: 'ERP lists the Completed work orders',
      method: 'GET',
      path: workOrders,
      query: [['status', 'Completed'], ['limit', '100']],
      keyVar: 'erpKey',
      test() {
        pm.test('200 with a page', function () {
          pm.response.to.have.status(200);
          const page = pm.response.json();
          pm.expect(page.items).to.be.an('array');
          pm.expect(page).to.have.property('next_cursor');
        });
        pm.test('every item is Completed, with its completed_at', function () {
          pm.response.json().items.forEach(function (w) {
            pm.expect(w.status).to.eql('Completed');
            pm.expect(w.completed_at).to.be.a('string');
          });
        });
        pm.test('the order just completed is on the first page (newest first)', function () {
          const ids = pm.response.json().items.map(function (w) { return w.id; });
          pm.expect(ids).to.include(pm.collectionVariables.get('erpWorkOrderId'));
        });
        pm.test('the rate limit is announced', function () {
          pm.expect(Number(pm.response.headers.get('RateLimit-Limit'))).to.be.above(0);
          pm.expect(pm.response.headers.has('RateLimit-Remaining')).to.be.true;
        });
      },
    }),
    request({
      name: 'ERP may not open a work order: 403 insufficient_scope',
      method: 'POST',
      path: workOrders,
      body: { title: 'Not allowed', priority: 'Low' },
      keyVar: 'erpKey',
      test() {
        pm.test('403 problem+json naming work-orders:write', function () {
          pm.response.to.have.status(403);
          pm.expect(pm.response.headers.get('Content-Type')).to.include('application/problem+json');
          const problem = pm.response.json();
          pm.expect(problem.code).to.eql('insufficient_scope');
          pm.expect(problem.scope).to.eql('work-orders:write');
        });
      },
    }),
    revokeKey('erpKey', 'SAP ERP Integration'),
  ],
);

const scada = folder(
  'SCADA create',
  'The SCADA system opens a work order when a reading crosses a threshold, with a write-only key (`work-orders:write`).',
  [
    createKey('scadaKey', 'SCADA', ['work-orders:write']),
    request({
      name: 'SCADA opens a work order: 201 and Location',
      method: 'POST',
      path: workOrders,
      body: { title: 'Pump 7: discharge pressure high', priority: 'High', description: 'Reading 9.8 bar, threshold 9.0 bar' },
      keyVar: 'scadaKey',
      test() {
        pm.test('201 Created', function () {
          pm.response.to.have.status(201);
        });
        const order = pm.response.json();
        pm.test('the work order as sent, Open, created by the SCADA key', function () {
          pm.expect(order.title).to.eql('Pump 7: discharge pressure high');
          pm.expect(order.priority).to.eql('High');
          pm.expect(order.status).to.eql('Open');
          pm.expect(order.completed_at).to.eql(null);
          pm.expect(order.org_id).to.eql(pm.variables.get('orgId'));
          pm.expect(order.created_by).to.eql(pm.collectionVariables.get('scadaKeyId'));
        });
        const location = pm.response.headers.get('Location') || '';
        pm.collectionVariables.set('scadaWorkOrderId', order.id);
        // Relative to the server: the next request reads {{baseUrl}}/{{scadaLocation}}.
        pm.collectionVariables.set('scadaLocation', location.replace(/^\//, ''));
        pm.test('Location names the new work order', function () {
          pm.expect(location).to.eql('/organizations/' + pm.variables.get('orgId') + '/work-orders/' + order.id);
        });
      },
    }),
    request({
      name: 'Root key reads it at its Location',
      method: 'GET',
      path: '/{{scadaLocation}}',
      test() {
        pm.test('200, the same work order', function () {
          pm.response.to.have.status(200);
          pm.expect(pm.response.json().id).to.eql(pm.collectionVariables.get('scadaWorkOrderId'));
          pm.expect(pm.response.json().title).to.eql('Pump 7: discharge pressure high');
        });
      },
    }),
    request({
      name: 'SCADA may not list work orders: 403 insufficient_scope',
      method: 'GET',
      path: workOrders,
      keyVar: 'scadaKey',
      test() {
        pm.test('403 naming work-orders:read', function () {
          pm.response.to.have.status(403);
          pm.expect(pm.response.json().code).to.eql('insufficient_scope');
          pm.expect(pm.response.json().scope).to.eql('work-orders:read');
        });
      },
    }),
    revokeKey('scadaKey', 'SCADA'),
  ],
);

const field = folder(
  'Field app update',
  "A technician's field app takes a work order and completes it (`work-orders:read`, `work-orders:write`).",
  [
    createKey('fieldKey', 'Field app', ['work-orders:read', 'work-orders:write']),
    request({
      name: 'Setup: root key opens a work order',
      method: 'POST',
      path: workOrders,
      body: { title: 'Inspect valve V-12', priority: 'Low' },
      test() {
        pm.collectionVariables.set('fieldWorkOrderId', pm.response.json().id);
        pm.test('201 Created', function () {
          pm.response.to.have.status(201);
        });
      },
    }),
    request({
      name: 'Field app starts it: PATCH status InProgress',
      method: 'PATCH',
      path: `${workOrders}/{{fieldWorkOrderId}}`,
      body: { status: 'InProgress' },
      keyVar: 'fieldKey',
      test() {
        pm.test('200, InProgress, not completed', function () {
          pm.response.to.have.status(200);
          const order = pm.response.json();
          pm.expect(order.id).to.eql(pm.collectionVariables.get('fieldWorkOrderId'));
          pm.expect(order.status).to.eql('InProgress');
          pm.expect(order.completed_at).to.eql(null);
          pm.expect(order.title).to.eql('Inspect valve V-12');
        });
      },
    }),
    request({
      name: 'Field app completes it: PATCH status Completed',
      method: 'PATCH',
      path: `${workOrders}/{{fieldWorkOrderId}}`,
      body: { status: 'Completed' },
      keyVar: 'fieldKey',
      test() {
        pm.test('200, Completed, completed_at stamped', function () {
          pm.response.to.have.status(200);
          const order = pm.response.json();
          pm.expect(order.status).to.eql('Completed');
          pm.expect(Date.parse(order.completed_at)).to.be.a('number').and.not.NaN;
          pm.expect(Date.parse(order.updated_at)).to.be.at.least(Date.parse(order.created_at));
        });
      },
    }),
    request({
      name: 'Field app reads it back',
      method: 'GET',
      path: `${workOrders}/{{fieldWorkOrderId}}`,
      keyVar: 'fieldKey',
      test() {
        pm.test('200, the change is kept', function () {
          pm.response.to.have.status(200);
          pm.expect(pm.response.json().status).to.eql('Completed');
        });
      },
    }),
    request({
      name: 'Field app sends an unknown status: 422 naming the field',
      method: 'PATCH',
      path: `${workOrders}/{{fieldWorkOrderId}}`,
      body: { status: 'Done' },
      keyVar: 'fieldKey',
      test() {
        pm.test('422 problem+json naming status', function () {
          pm.response.to.have.status(422);
          pm.expect(pm.response.headers.get('Content-Type')).to.include('application/problem+json');
          pm.expect(pm.response.json().field).to.eql('status');
        });
      },
    }),
    revokeKey('fieldKey', 'Field app'),
  ],
);

// One paging request per resource: it repeats itself (setNextRequest) while next_cursor
// is set, collecting ids, then checks the pages. At most 200 pages of `pageSize`.
function pageThrough(what, path, seenVar, createdVar) {
  return request({
    name: `Warehouse pages through the ${what} with next_cursor`,
    method: 'GET',
    path,
    query: [['limit', '{{pageSize}}'], ['cursor', '{{cursor}}']],
    keyVar: 'warehouseKey',
    prerequest: new Function(`
      if (!pm.collectionVariables.has('cursor')) pm.collectionVariables.set('cursor', '');
      if (!pm.collectionVariables.has('pageSize')) pm.collectionVariables.set('pageSize', '2');
    `),
    test: new Function(`
      const limit = Number(pm.collectionVariables.get('pageSize'));
      const seen = JSON.parse(pm.collectionVariables.get('${seenVar}') || '[]');
      const pages = Number(pm.collectionVariables.get('pages') || '0') + 1;
      pm.collectionVariables.set('pages', String(pages));
      pm.test('page ' + pages + ': 200, at most ' + limit + ' items', function () {
        pm.response.to.have.status(200);
        pm.expect(pm.response.json().items.length).to.be.at.most(limit);
      });
      const page = pm.response.json();
      page.items = page.items || [];
      page.items.forEach(function (x) { seen.push(x.id); });
      pm.collectionVariables.set('${seenVar}', JSON.stringify(seen));
      if (page.next_cursor && pages < 200) {
        pm.test('page ' + pages + ' is full and says where the next one starts', function () {
          pm.expect(page.items.length).to.eql(limit);
          pm.expect(page.next_cursor).to.be.a('string').and.not.empty;
        });
        pm.collectionVariables.set('cursor', page.next_cursor);
        pm.execution.setNextRequest(pm.info.requestName);
      } else {
        pm.test('the last page has next_cursor null', function () {
          pm.expect(page.next_cursor).to.eql(null);
        });
        pm.test('more than one page was read', function () {
          pm.expect(pages).to.be.above(1);
        });
        pm.test('no ${what.replace(/s$/, '')} was seen twice', function () {
          pm.expect(new Set(seen).size).to.eql(seen.length);
        });
        pm.test('every ${what.replace(/s$/, '')} made for this flow was exported', function () {
          JSON.parse(pm.collectionVariables.get('${createdVar}') || '[]').forEach(function (id) {
            pm.expect(seen).to.include(id);
          });
        });
        ['cursor', 'pages', '${seenVar}'].forEach(function (v) { pm.collectionVariables.unset(v); });
      }
    `),
  });
}

// Setup requests that remember what they made in a JSON list variable.
function made(listVar, name, path, body) {
  return request({
    name,
    method: 'POST',
    path,
    body,
    test: new Function(`
      pm.test('201 Created', function () {
        pm.response.to.have.status(201);
      });
      const list = JSON.parse(pm.collectionVariables.get('${listVar}') || '[]');
      list.push(pm.response.json().id);
      pm.collectionVariables.set('${listVar}', JSON.stringify(list));
    `),
  });
}

const warehouse = folder(
  'Warehouse export',
  'The data warehouse exports every work order and asset, page by page (`work-orders:read`, `assets:read`; `pageSize` items a page, 2 unless set).',
  [
    request({
      name: 'Setup: forget the last export',
      method: 'GET',
      path: '/healthz',
      description: 'No call of the flow itself: clears the variables the export keeps.',
      test() {
        ['warehouseWorkOrders', 'warehouseAssets', 'cursor', 'pages', 'seenWorkOrders', 'seenAssets']
          .forEach(function (v) { pm.collectionVariables.unset(v); });
        pm.test('200 from /healthz', function () {
          pm.response.to.have.status(200);
        });
      },
    }),
    createKey('warehouseKey', 'Data warehouse', ['work-orders:read', 'assets:read']),
    made('warehouseWorkOrders', 'Setup: root key opens work order 1 of 3', workOrders, { title: 'Export check 1', priority: 'Low' }),
    made('warehouseWorkOrders', 'Setup: root key opens work order 2 of 3', workOrders, { title: 'Export check 2', priority: 'Medium' }),
    made('warehouseWorkOrders', 'Setup: root key opens work order 3 of 3', workOrders, { title: 'Export check 3', priority: 'Critical' }),
    made('warehouseAssets', 'Setup: root key adds asset 1 of 3', assets, { name: 'Pump 7', kind: 'pump', location: 'Building A' }),
    made('warehouseAssets', 'Setup: root key adds asset 2 of 3', assets, { name: 'Conveyor 3', kind: 'conveyor', location: 'Building A' }),
    made('warehouseAssets', 'Setup: root key adds asset 3 of 3', assets, { name: 'Valve V-12', kind: 'valve' }),
    pageThrough('work orders', workOrders, 'seenWorkOrders', 'warehouseWorkOrders'),
    pageThrough('assets', assets, 'seenAssets', 'warehouseAssets'),
    request({
      name: 'Warehouse may not write: 403 insufficient_scope',
      method: 'POST',
      path: assets,
      body: { name: 'Not allowed' },
      keyVar: 'warehouseKey',
      test() {
        pm.test('403 naming assets:write', function () {
          pm.response.to.have.status(403);
          pm.expect(pm.response.json().scope).to.eql('assets:write');
        });
      },
    }),
    revokeKey('warehouseKey', 'Data warehouse'),
  ],
);

const revoke = folder(
  'Revoke and see 401',
  'A key works until it is revoked; the next call with it is 401.',
  [
    createKey('laptopKey', 'Contractor laptop', ['work-orders:read']),
    request({
      name: 'The new key works: /whoami',
      method: 'GET',
      path: '/whoami',
      keyVar: 'laptopKey',
      test() {
        pm.test('200, it is the new key', function () {
          pm.response.to.have.status(200);
          pm.expect(pm.response.json().id).to.eql(pm.collectionVariables.get('laptopKeyId'));
        });
      },
    }),
    request({
      name: 'The new key reads work orders',
      method: 'GET',
      path: workOrders,
      query: [['limit', '1']],
      keyVar: 'laptopKey',
      test() {
        pm.test('200', function () {
          pm.response.to.have.status(200);
        });
      },
    }),
    request({
      name: 'Root key revokes it',
      method: 'POST',
      path: `${keys}/{{laptopKeyId}}/revoke`,
      body: { reason: 'laptop lost' },
      test() {
        pm.test('200, revoked', function () {
          pm.response.to.have.status(200);
          pm.expect(pm.response.json().status).to.eql('revoked');
        });
      },
    }),
    request({
      name: 'The revoked key is refused: 401',
      method: 'GET',
      path: workOrders,
      query: [['limit', '1']],
      keyVar: 'laptopKey',
      test() {
        pm.test('401', function () {
          pm.response.to.have.status(401);
        });
        pm.test('WWW-Authenticate says invalid_token', function () {
          const challenge = pm.response.headers.get('WWW-Authenticate');
          pm.expect(challenge).to.include('Bearer');
          pm.expect(challenge).to.include('invalid_token');
        });
        pm.test('problem+json, no secret in it', function () {
          pm.expect(pm.response.headers.get('Content-Type')).to.include('application/problem+json');
          pm.expect(pm.response.json().status).to.eql(401);
          pm.expect(pm.response.text()).to.not.include(pm.collectionVariables.get('laptopKey'));
        });
      },
    }),
    request({
      name: 'The revoked key is refused on /whoami too: 401',
      method: 'GET',
      path: '/whoami',
      keyVar: 'laptopKey',
      test() {
        pm.test('401', function () {
          pm.response.to.have.status(401);
        });
        pm.collectionVariables.unset('laptopKey');
      },
    }),
  ],
);

module.exports = folder(
  'Seed flows',
  'Hand-kept (tests/postman/seed-flows.js): the seeds\' integrations with assertions. Set baseUrl, orgId and apiKey (a root key: it makes and revokes the keys each flow uses), then run this folder. CI runs it with newman against the real binary (tests/postman/run.sh).',
  [checkVariables, erp, scada, field, warehouse, revoke],
);
