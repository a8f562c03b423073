"""Real-world job titles in English and Chinese, each with the seniority level it should read as.

Test data for ``leadscore.features.seniority`` (issue 13): titles as they occur in CRM
contact records, job postings, company leadership pages and the organisation charts of
Chinese public bodies (bureaus, hospitals, schools), written by hand for this test.

Where the conventions come from:

* The scale is ``leadscore.features.seniority.Seniority``, the one the feature catalog
  describes (``_seniority_scale()`` in ``leadscore/features/catalog.py``): 1 individual
  contributor, 2 supervisor or team lead, 3 manager, 4 director or head, 5 vice
  president, 6 C-level, owner or general manager. Director and above count as senior.
  ``None`` means the title names no level (a department, an office) and reads as NaN.
* The level is the buying power the title shows, not the grade it carries: 'Senior' and
  '高级' change nothing, and professional grades (主任医师, 主任科员, 'Principal Engineer')
  are individual contributors.
* "Assistant to X", "X Assistant", "X助理", "X秘书": the person assists X, so level 1
  whoever X is. The title itself says someone else decides. The exception is the
  company secretary (董事会秘书, 董秘, 'Company Secretary'), a listed company's statutory
  officer, at 5. 总经理助理 is read the same way (1), though in some Chinese firms it is
  a post on the management team: the title alone does not say which.
* "Office of X", "X's Office", "X办公室", "X办": a unit named after its leader. The person
  works in it and is not X, so the word that follows decides (主任 3, 秘书 and
  'Coordinator' 1). The office alone names no one (None).
* "X to the Y" ('Chief of Staff to the CEO', 'Advisor to the President'): Y is whom the
  person serves, so Y does not count. 'Chief of Staff' is 4: in the room for the
  executive's decisions, owns no budget of their own.
* Public sector: the head of a public body is its C-level (局长 bureau, 厅长 provincial
  department, 院长 hospital/academy/court, 校长 school, 书记 the party secretary who leads
  it, 市长/县长/镇长, 主任 of a commission such as 卫健委), and a deputy (副) of one is 5.
  The head of a unit inside a body is 4 (处长, 司长 a ministry's department, 所长, 秘书长
  who heads the secretariat), a section head 3 (科长, 股长).
* 主任 has several meanings: the head of an office, a workshop, a hospital department or
  a centre is 3 (like 科长); the head of a commission is 6; 主任医师 and 主任科员 are
  grades (1); 班主任 is a homeroom teacher (1).
* Procurement: 采购 as a title is a buyer (1, like 'Buyer'); 采购部 is the department.
  'Procurement Lead' is a lead (2).
* An HR business partner ('HR BP', 'HRBP') advises a unit's head and owns no team: 1.
  One who leads says so ('HRBP Manager' 3, 'HRBP负责人' 4).
"""

from __future__ import annotations

#: (title, expected level or None when the title names no level)
Row = tuple[str, int | None]

ENGLISH: tuple[Row, ...] = (
    ("Software Engineer", 1),
    ("Senior Software Engineer", 1),
    ("Principal Engineer", 1),
    ("Staff Engineer", 1),
    ("Data Analyst", 1),
    ("Financial Analyst", 1),
    ("Sales Representative", 1),
    ("Business Development Representative", 1),
    ("Account Executive", 1),
    ("Sales Exec", 1),
    ("Customer Success Specialist", 1),
    ("Marketing Coordinator", 1),
    ("System Administrator", 1),
    ("Senior Accountant", 1),
    ("Senior Consultant", 1),
    ("Jr. Analyst", 1),
    ("Intern", 1),
    ("Receptionist", 1),
    ("Technical Recruiter", 1),
    ("Internal Auditor", 1),
    ("Legal Counsel", 1),
    ("Field Service Technician", 1),
    ("Team Leader", 2),
    ("Tech Lead", 2),
    ("Supervisor", 2),
    ("Foreman", 2),
    ("Lead Developer", 2),
    ("Customer Service Supervisor", 2),
    ("Asst. Mgr.", 2),
    ("Manager", 3),
    ("IT Manager", 3),
    ("Sr. Mgr", 3),
    ("Senior Manager, Finance", 3),
    ("Product Manager", 3),
    ("Regional Sales Manager", 3),
    ("Office Manager", 3),
    ("Facilities Manager", 3),
    ("Mgr., Operations", 3),
    ("Assistant Director", 3),
    ("AVP, Risk", 3),
    ("Associate General Counsel", 3),
    ("Dir.", 4),
    ("Sr. Dir., Marketing", 4),
    ("Director of IT", 4),
    ("IT Director", 4),
    ("Head of Sales", 4),
    ("Head of Operations", 4),
    ("Dept. Head", 4),
    ("Account Director", 4),
    ("Creative Director", 4),
    ("Secretary General", 4),  # heads the secretariat: not a secretary
    ("Deputy Secretary-General", 4),
    ("VP", 5),
    ("VP, Engineering", 5),
    ("SVP", 5),
    ("SVP, Global Sales", 5),
    ("EVP", 5),
    ("Executive Vice President", 5),
    ("Senior Vice President, Operations", 5),
    ("Sr. VP", 5),
    ("Exec. Dir.", 5),
    ("Vice Chairman", 5),
    ("Deputy Managing Director", 5),
    ("Deputy MD", 5),
    ("Company Secretary", 5),
    ("CMO", 6),
    ("CHRO", 6),
    ("CISO", 6),
    ("Chief Financial Officer", 6),
    ("Chief Information Officer", 6),
    ("Chief Operating Officer", 6),
    ("Co-founder & CTO", 6),
    ("MD", 6),
    ("MD, Asia Pacific", 6),
    ("Gen. Mgr.", 6),
    ("Chairwoman", 6),
    ("Board Member", 6),
    ("Non-Executive Director", 6),
    ("Managing Partner", 6),
    ("General Counsel", 6),
    ("ＣＦＯ", 6),
)

ENGLISH_PROCUREMENT: tuple[Row, ...] = (
    ("Buyer", 1),
    ("Senior Buyer", 1),
    ("Purchasing Agent", 1),
    ("Procurement Specialist", 1),
    ("Procurement Officer", 1),
    ("Contracts Officer", 1),
    ("Sourcing Specialist", 1),
    ("Lead Buyer", 2),
    ("Procurement Lead", 2),
    ("Purchasing Supervisor", 2),
    ("Purchasing Manager", 3),
    ("Category Manager", 3),
    ("Strategic Sourcing Manager", 3),
    ("Head of Procurement", 4),
    ("Director of Purchasing", 4),
    ("Procurement Director", 4),
    ("VP Procurement", 5),
    ("Chief Procurement Officer", 6),
    ("Procurement", None),
)

ENGLISH_OFFICES_AND_ASSISTANTS: tuple[Row, ...] = (
    ("Executive Assistant to the CEO", 1),
    ("Assistant to the Vice President", 1),
    ("Assistant to the General Manager", 1),
    ("Personal Assistant to the Chairman", 1),
    ("Special Assistant to the President", 1),
    ("Secretary to the CEO", 1),
    ("Senior Advisor to the CEO", 1),
    ("Exec. Asst.", 1),
    ("Office of the CEO Coordinator", 1),
    ("Office of the President Analyst", 1),
    ("CEO Office Manager", 3),
    ("President's Office Manager", 3),
    ("Chief of Staff", 4),
    ("Chief of Staff to the CEO", 4),
    ("Head of the Office of the CEO", 4),
    ("Office of the CEO", None),
)

ENGLISH_TRAPS: tuple[Row, ...] = (
    ("Director of First Impressions", 1),  # the receptionist
    ("Head Chef", 2),  # leads a kitchen crew, heads no department
    ("Head Nurse", 2),
    ("Leadership Development Specialist", 1),
    ("Head Office Manager", 3),  # head office = headquarters
    ("Director, Office of Small Business", 4),  # an office that is not a leader's
    ("Vice President", 5),
)

MIXED: tuple[Row, ...] = (
    ("HR BP", 1),
    ("HRBP", 1),
    ("Senior HRBP", 1),
    ("HR Business Partner", 1),
    ("Finance Business Partner", 1),
    ("HRBP Lead", 2),
    ("HRBP Manager", 3),
    ("HRBP负责人", 4),
    ("HRBP 人力资源业务伙伴", 1),
    ("VP, Sales 销售副总裁", 5),
    ("GM 总经理", 6),
    ("CFO 首席财务官", 6),
    ("IT Director / IT总监", 4),
    ("Sr. Mgr 高级经理", 3),
    ("采购经理 Purchasing Manager", 3),
    ("Buyer 采购", 1),
    ("副总经理 Deputy GM", 5),
    ("总经理助理 Assistant to GM", 1),
    ("CEO办公室主任", 3),
    ("HR经理", 3),
    ("HR专员", 1),
)

CHINESE: tuple[Row, ...] = (
    ("软件工程师", 1),
    ("销售代表", 1),
    ("业务员", 1),
    ("客服", 1),
    ("会计", 1),
    ("出纳", 1),
    ("文员", 1),
    ("前台", 1),
    ("行政专员", 1),
    ("人事专员", 1),
    ("市场专员", 1),
    ("技术员", 1),
    ("设计师", 1),
    ("程序员", 1),
    ("实习生", 1),
    ("分析师", 1),
    ("高级顾问", 1),
    ("研究员", 1),
    ("销售主管", 2),
    ("客服主管", 2),
    ("班组长", 2),
    ("领班", 2),
    ("班长", 2),
    ("项目组长", 2),
    ("厨师长", 2),  # the head chef: leads a kitchen crew
    ("高级经理", 3),
    ("客户经理", 3),
    ("区域经理", 3),
    ("大区经理", 3),
    ("产品经理", 3),
    ("部门经理", 3),
    ("财务经理", 3),
    ("人力资源经理", 3),
    ("店长", 3),
    ("车间主任", 3),
    ("主任", 3),
    ("技术总监", 4),
    ("财务总监", 4),
    ("市场总监", 4),
    ("人力资源总监", 4),
    ("运营总监", 4),
    ("项目总监", 4),
    ("副部长", 4),
    ("负责人", 4),
    ("厂长", 4),
    ("副厂长", 4),
    ("总工程师", 4),
    ("执行副总裁", 5),
    ("常务副总经理", 5),
    ("副董事长", 5),
    ("董秘", 5),
    ("销售副总裁", 5),
    ("执行总裁", 6),
    ("董事长兼总经理", 6),
    ("执行董事", 6),
    ("合伙人", 6),
    ("老板", 6),
    ("法人代表", 6),
    ("首席技术官", 6),
    ("首席信息官", 6),
)

CHINESE_PUBLIC_SECTOR: tuple[Row, ...] = (
    ("局长", 6),
    ("副局长", 5),
    ("教育局局长", 6),
    ("卫生局副局长", 5),
    ("局长助理", 1),
    ("厅长", 6),
    ("副厅长", 5),
    ("司长", 4),
    ("副司长", 4),
    ("处长", 4),
    ("副处长", 4),
    ("财政厅采购处处长", 4),
    ("科长", 3),
    ("副科长", 3),
    ("信息科科长", 3),
    ("股长", 3),
    ("所长", 4),
    ("秘书长", 4),  # heads the secretariat of a government or an association
    ("副秘书长", 4),
    ("院长", 6),
    ("副院长", 5),
    ("医院院长", 6),
    ("院长助理", 1),
    ("院长办公室主任", 3),
    ("校长", 6),
    ("副校长", 5),
    ("校长办公室主任", 3),
    ("书记", 6),
    ("党委书记", 6),
    ("党委副书记", 5),
    ("党委办公室主任", 3),
    ("书记员", 1),  # a court clerk
    ("市长", 6),
    ("副市长", 5),
    ("县长", 6),
    ("镇长", 6),
    ("卫健委主任", 6),
    ("卫生健康委员会主任", 6),
    ("发改委副主任", 5),
    ("科主任", 3),
    ("信息中心主任", 3),
    ("办公室主任", 3),
    ("副主任", 3),
    ("主任科员", 1),
    ("一级主任科员", 1),
    ("副主任科员", 1),
    ("科员", 1),
    ("主任医师", 1),
    ("副主任医师", 1),
    ("主治医师", 1),
    ("医生", 1),
    ("护士长", 2),
    ("护士", 1),
    ("教师", 1),
    ("教授", 1),
    ("副教授", 1),
    ("班主任", 1),  # a homeroom teacher
)

CHINESE_PROCUREMENT: tuple[Row, ...] = (
    ("采购", 1),
    ("高级采购", 1),
    ("采购工程师", 1),
    ("采购组长", 2),
    ("采购主管", 2),
    ("采购部经理", 3),
    ("采购中心主任", 3),
    ("政府采购科科长", 3),
    ("采购总监", 4),
    ("采购负责人", 4),
    ("采购副总裁", 5),
    ("首席采购官", 6),
    ("采购部", None),
)

CHINESE_OFFICES_AND_ASSISTANTS: tuple[Row, ...] = (
    ("总经理办公室主任", 3),
    ("总经理办公室副主任", 3),
    ("总经办主任", 3),
    ("总裁办主任", 3),
    ("总裁办秘书", 1),
    ("总经理办公室秘书", 1),
    ("董事会办公室主任", 3),
    ("董办主任", 3),
    ("董事长办公室主任", 3),
    ("总经理助理", 1),
    ("总裁助理", 1),
    ("董事长助理", 1),
    ("总经理秘书", 1),
    ("总监助理", 1),
    ("经理助理", 1),
    ("行政助理", 1),
    ("秘书", 1),
    ("董事会秘书", 5),  # the listed company's statutory officer, not an assistant
    ("总裁办", None),
    ("总经理办公室", None),
)

TITLES: tuple[Row, ...] = (
    *ENGLISH,
    *ENGLISH_PROCUREMENT,
    *ENGLISH_OFFICES_AND_ASSISTANTS,
    *ENGLISH_TRAPS,
    *MIXED,
    *CHINESE,
    *CHINESE_PUBLIC_SECTOR,
    *CHINESE_PROCUREMENT,
    *CHINESE_OFFICES_AND_ASSISTANTS,
)
