/*
 * Business rule: "Image Request Bridge - notify on approval"
 *
 *   Table:      Requested Item [sc_req_item]
 *   When:       async          Insert: true   Update: true   Order: 200
 *   Advanced:   true
 *   Condition:  current.approval.changesTo('approved') && current.getValue('cat_item') == gs.getProperty('x_bridge.catalog_item')
 *
 * Tells the Image Request Bridge that a requested item of the image-request
 * catalog item was approved. The message only names the RITM: the bridge
 * re-reads it through the Table API before acting, and its scheduled poll
 * still finds every approved item if this notification is lost.
 *
 * System properties read here (see README.md):
 *   x_bridge.webhook_url     https://<bridge host>/webhooks/servicenow
 *   x_bridge.webhook_secret  shared HMAC key (type password2, private)
 *   x_bridge.catalog_item    sys_id of the image-request catalog item
 *   x_bridge.mid_server      optional: MID server name, when the bridge is only
 *                            reachable from inside the network
 *
 * Runs in the Global scope (GlideCertificateEncryption is a global API).
 */
(function executeRule(current, previous /* null in async rules */) {
	var LOG_SOURCE = 'ImageRequestBridge';

	var url = gs.getProperty('x_bridge.webhook_url', '');
	var secret = gs.getProperty('x_bridge.webhook_secret', '');
	var catalogItem = gs.getProperty('x_bridge.catalog_item', '');
	var midServer = gs.getProperty('x_bridge.mid_server', '');

	if (!url || !secret || !catalogItem) {
		gs.warn('Image Request Bridge: x_bridge.webhook_url, x_bridge.webhook_secret or x_bridge.catalog_item is not set; ' +
			current.getValue('number') + ' is left to the scheduled poll', LOG_SOURCE);
		return;
	}
	// The condition was evaluated when the record was saved; the record may
	// have changed since this async rule was queued.
	if (current.getValue('approval') != 'approved' || current.getValue('cat_item') != catalogItem) {
		return;
	}

	var eventId = gs.generateGUID();

	// A thin body: identifiers only, no free text. The signature covers these
	// exact bytes, so the string that is signed is the string that is sent.
	var body = JSON.stringify({
		event: 'ritm.approval.approved',
		event_id: eventId,
		instance: gs.getProperty('instance_name', ''),
		table: current.getTableName(),
		sys_id: current.getUniqueValue(),
		number: current.getValue('number'),
		cat_item: current.getValue('cat_item'),
		approval: current.getValue('approval'),
		state: current.getValue('state'),
		sys_updated_on: current.getValue('sys_updated_on'),
		sys_mod_count: current.getValue('sys_mod_count')
	});

	// HMAC-SHA256 of the body under the shared secret; generateMac takes the
	// key base64-encoded and returns the MAC base64-encoded.
	var signature = new GlideCertificateEncryption().generateMac(
		GlideStringUtil.base64Encode(secret), 'HmacSHA256', body);
	secret = null;

	try {
		var request = new sn_ws.RESTMessageV2();
		request.setEndpoint(url);
		request.setHttpMethod('post');
		request.setRequestHeader('Content-Type', 'application/json');
		request.setRequestHeader('Accept', 'text/plain');
		request.setRequestHeader('X-Signature', signature);
		request.setRequestHeader('X-Event-Id', eventId);
		request.setRequestBody(body);
		request.setHttpTimeout(20000);
		if (midServer) {
			request.setMIDServer(midServer);
		}

		var response = request.executeAsync();
		// This rule already runs in the background: waiting for the answer
		// only delays this worker, and lets the outcome be logged.
		response.waitForResponse(30);
		var status = response.getStatusCode();
		if (status == 202 || status == 200) {
			gs.info('Image Request Bridge: notified about ' + current.getValue('number') +
				' (HTTP ' + status + ', event ' + eventId + ')', LOG_SOURCE);
		} else {
			// RESTMessageV2 does not retry. 503 means the bridge's queue is full;
			// any failure is picked up by the bridge's scheduled poll.
			gs.warn('Image Request Bridge: notification for ' + current.getValue('number') +
				' answered HTTP ' + status + ' (event ' + eventId + '); the scheduled poll will pick it up', LOG_SOURCE);
		}
	} catch (e) {
		gs.warn('Image Request Bridge: notification for ' + current.getValue('number') +
			' failed (' + e.message + '); the scheduled poll will pick it up', LOG_SOURCE);
	}
})(current, previous);
