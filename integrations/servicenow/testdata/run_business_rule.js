// Runs business_rule_image_request_approved.js against stand-ins for the
// ServiceNow APIs it calls and prints the request it would send, as JSON:
// {"url", "method", "headers", "body"}. Used by the bridge's tests to check
// that what the rule sends is what the bridge accepts.
//
//   node run_business_rule.js <rule.js>
//
// Environment: BRIDGE_SECRET (the webhook secret), BRIDGE_URL, RITM_SYS_ID.
'use strict';
const crypto = require('crypto');
const fs = require('fs');

const props = {
	'x_bridge.webhook_url': process.env.BRIDGE_URL || 'https://bridge.example.com/webhooks/servicenow',
	'x_bridge.webhook_secret': process.env.BRIDGE_SECRET || '',
	'x_bridge.catalog_item': '3f1dd0320a0a0b99000a53f7604a2ef9',
	'instance_name': 'example',
};
const record = {
	approval: 'approved',
	cat_item: '3f1dd0320a0a0b99000a53f7604a2ef9',
	number: 'RITM0010001',
	state: '1',
	sys_updated_on: '2024-01-02 15:04:05',
	sys_mod_count: '3',
};
const sent = { headers: {} };

const gs = {
	getProperty: (k, d) => (k in props ? props[k] : d),
	generateGUID: () => crypto.randomBytes(16).toString('hex'),
	info: (m) => process.stderr.write('info: ' + m + '\n'),
	warn: (m) => process.stderr.write('warn: ' + m + '\n'),
};
// generateMac: the key arrives base64-encoded, the MAC leaves base64-encoded.
function GlideCertificateEncryption() {}
GlideCertificateEncryption.prototype.generateMac = function (key, algorithm, data) {
	if (algorithm !== 'HmacSHA256') throw new Error('unexpected algorithm ' + algorithm);
	return crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(data, 'utf8').digest('base64');
};
const GlideStringUtil = { base64Encode: (s) => Buffer.from(s, 'utf8').toString('base64') };
const sn_ws = {
	RESTMessageV2: function () {
		this.setEndpoint = (u) => { sent.url = u; };
		this.setHttpMethod = (m) => { sent.method = m.toUpperCase(); };
		this.setRequestHeader = (k, v) => { sent.headers[k] = v; };
		this.setRequestBody = (b) => { sent.body = b; };
		this.setHttpTimeout = () => {};
		this.setMIDServer = () => {};
		this.executeAsync = () => ({ waitForResponse: () => {}, getStatusCode: () => 202 });
	},
};
const current = {
	getValue: (f) => record[f],
	getUniqueValue: () => process.env.RITM_SYS_ID || 'a1b2c3d4e5f60718293a4b5c6d7e8f90',
	getTableName: () => 'sc_req_item',
};
const previous = null;

eval(fs.readFileSync(process.argv[2], 'utf8'));
if (!sent.body) {
	process.stderr.write('the rule sent nothing\n');
	process.exit(1);
}
process.stdout.write(JSON.stringify(sent) + '\n');
